/**
 * The log's digest chain: digest_N = SHA-256(digest_{N-1} as 32 raw bytes ‖ UTF-8 bytes of payload_N), with
 * digest_0 = 32 zero bytes, where payload_N is the exact TRADING message body (the `payload` column). Each event's
 * digest commits to every event before it, so changing, dropping or reordering any stored or published event
 * changes every later digest. `events.digest` keeps all 32 bytes; each TRADING message's msg id carries the first
 * 16 (`<sequenceId>:<32 hex characters>`, tradingMsgId in src/adapters/nats/trading-publisher.ts).
 *
 * Digests travel as 64 lowercase hex characters (the insert's JSON, Head.digest; the msg id takes the first 32);
 * the chain itself hashes the raw bytes. node:crypto, so the same code runs on Bun, Node and Deno.
 */
import { Buffer } from "node:buffer";
import * as nodeCrypto from "node:crypto";
import { GENESIS_DIGEST } from "../domain/sequencing.ts";

const { createHash } = nodeCrypto;
/**
 * One-shot `crypto.hash` (Node ≥ 20.12, Bun): about twice as fast per event as createHash().update().digest(),
 * which the sequencer pays for every event it numbers. createHash where a runtime lacks it.
 */
const oneShotHash = (
  nodeCrypto as { hash?: (algorithm: string, data: Uint8Array, encoding: "buffer") => Buffer }
).hash;

export const DIGEST_BYTES = 32;
/** digest_0, the digest the first event is chained from: 32 zero bytes, as hex. */
export const ZERO_DIGEST: string = GENESIS_DIGEST;

const HEX_DIGEST = /^[0-9a-f]{64}$/;

export function isDigestHex(value: string): boolean {
  return HEX_DIGEST.test(value);
}

/** 64 lowercase hex characters → 32 bytes; throws on anything else. */
export function digestFromHex(hex: string): Uint8Array {
  if (!isDigestHex(hex))
    throw new Error(`not a digest (64 lowercase hex characters): ${JSON.stringify(hex)}`);
  return Buffer.from(hex, "hex");
}

export function digestToHex(digest: Uint8Array): string {
  if (digest.length !== DIGEST_BYTES)
    throw new Error(`a digest has ${DIGEST_BYTES} bytes, not ${digest.length}`);
  return Buffer.from(digest.buffer, digest.byteOffset, digest.length).toString("hex");
}

/** One link: SHA-256(previous ‖ UTF-8(payload)). */
export function chainDigest(previous: Uint8Array, payload: string): Uint8Array {
  return createHash("sha256").update(previous).update(payload, "utf8").digest();
}

/**
 * Chains payloads one after the other from a digest (hex), keeping the last one as raw bytes so that each link
 * hashes without a hex round trip. `next` returns the new digest as hex. The same as chainDigest link by link
 * (property-tested), but each link hashes one reused buffer [previous digest ‖ payload bytes] in one call.
 */
export class DigestChain {
  /** [the last digest (32 bytes) ‖ room for the next payload's UTF-8 bytes]. */
  private buffer: Buffer = Buffer.alloc(1024);
  private lastHex: string;

  constructor(fromHex: string = ZERO_DIGEST) {
    Buffer.from(digestFromHex(fromHex)).copy(this.buffer, 0);
    this.lastHex = fromHex;
  }

  /** The digest of the last payload chained (or the starting digest). */
  get head(): string {
    return this.lastHex;
  }

  next(payload: string): string {
    // A UTF-16 code unit is at most 3 UTF-8 bytes: with this much room, write() never cuts the payload short.
    const room = DIGEST_BYTES + payload.length * 3;
    if (room > this.buffer.length) {
      const grown = Buffer.alloc(Math.max(room, this.buffer.length * 2));
      this.buffer.copy(grown, 0, 0, DIGEST_BYTES);
      this.buffer = grown;
    }
    const end = DIGEST_BYTES + this.buffer.write(payload, DIGEST_BYTES, "utf8");
    const input = this.buffer.subarray(0, end);
    const digest = oneShotHash
      ? oneShotHash("sha256", input, "buffer")
      : createHash("sha256").update(input).digest();
    digest.copy(this.buffer, 0);
    this.lastHex = digest.toString("hex");
    return this.lastHex;
  }
}

/**
 * Bun's own SHA-256 (Bun.SHA256.hash): a quarter less per link than node:crypto's one-shot hash, for a reader
 * that hashes every event it reads. Absent on Node and Deno, which use node:crypto.
 */
const bunSha256 = (globalThis as { Bun?: { SHA256?: { hash(data: Uint8Array): Uint8Array } } }).Bun?.SHA256;

/**
 * DigestChain over bytes already in hand (a TRADING reader has the received body; encoding its decoded string
 * again would cost a UTF-8 pass): the same links, SHA-256(previous ‖ payload bytes), each returned as the raw 32
 * bytes (a new array per link, so it may be kept); hex only when the caller asks (digestToHex).
 */
export class ByteDigestChain {
  /** [the last digest (32 bytes) ‖ room for the next payload]. */
  private buffer: Buffer = Buffer.alloc(1024);
  /**
   * Views of buffer[0, n) by n, made once: a log's bodies come in a few hundred lengths, and a new view per link
   * was 2 % of a replay's CPU. Dropped when the buffer grows; at most the buffer's length entries.
   */
  private inputs = new Map<number, Buffer>();

  private inputOf(end: number): Buffer {
    let input = this.inputs.get(end);
    if (input === undefined) {
      input = this.buffer.subarray(0, end);
      this.inputs.set(end, input);
    }
    return input;
  }

  constructor(fromHex: string = ZERO_DIGEST) {
    Buffer.from(digestFromHex(fromHex)).copy(this.buffer, 0);
  }

  next(payload: Uint8Array): Uint8Array {
    const end = DIGEST_BYTES + payload.length;
    if (end > this.buffer.length) {
      const grown = Buffer.alloc(Math.max(end, this.buffer.length * 2));
      this.buffer.copy(grown, 0, 0, DIGEST_BYTES);
      this.buffer = grown;
      this.inputs = new Map();
    }
    this.buffer.set(payload, DIGEST_BYTES);
    const input = this.inputOf(end);
    const digest = bunSha256
      ? bunSha256.hash(input)
      : oneShotHash
        ? oneShotHash("sha256", input, "buffer")
        : createHash("sha256").update(input).digest();
    this.buffer.set(digest, 0);
    return digest;
  }
}

/** The digests of `payloads` chained after `fromHex`, as hex, in order. */
export function chainDigests(fromHex: string, payloads: Iterable<string>): string[] {
  const chain = new DigestChain(fromHex);
  const out: string[] = [];
  for (const payload of payloads) out.push(chain.next(payload));
  return out;
}
