/**
 * Idempotency records in a JetStream KV bucket (IDEMPOTENCY): create-if-absent is the bucket's atomic create,
 * the retention window is the bucket's TTL, and the data lives on the same broker as the intake stream.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { type KV, Kvm } from "@nats-io/kv";
import type { IdempotencyRecord, IdempotencyStore } from "../../app/ports.ts";
import { isKeyTaken } from "./kv-conflict.ts";

export const IDEMPOTENCY_BUCKET = "IDEMPOTENCY";

export class KvIdempotencyStore implements IdempotencyStore {
  private constructor(private readonly kv: KV) {}

  /** Opens the bucket, creating it when missing. */
  static async open(js: JetStreamClient, windowMs: number, replicas = 1): Promise<KvIdempotencyStore> {
    const kv = await new Kvm(js).create(IDEMPOTENCY_BUCKET, { ttl: windowMs, history: 1, replicas });
    return new KvIdempotencyStore(kv);
  }

  async get(key: string): Promise<IdempotencyRecord | null> {
    const entry = await this.kv.get(key);
    if (entry?.operation !== "PUT") return null;
    return entry.json<IdempotencyRecord>();
  }

  async create(key: string, record: IdempotencyRecord): Promise<boolean> {
    try {
      await this.kv.create(key, JSON.stringify(record));
      return true;
    } catch (error) {
      if (isKeyTaken(error)) return false; // anything else is a real failure
      throw error;
    }
  }

  async put(key: string, record: IdempotencyRecord): Promise<void> {
    await this.kv.put(key, JSON.stringify(record));
  }
}
