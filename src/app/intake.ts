/**
 * The intake use case, for all four event types: validate, mint ids, publish, answer. The answer is given only
 * after JetStream acknowledged the write; if it did not, the caller gets an UnavailableError (503) — an event is
 * never reported accepted unless it is on the intake stream.
 */

import {
  type CancelOrder,
  type CreateOrder,
  checkField,
  crossFieldProblem,
  type Deposit,
  decodeIntakeEvent,
  EVENT_FIELDS,
  type EventBody,
  encodeIntakeEvent,
  type Intake,
  isClientIdempotencyKey,
  type Transfer,
} from "../domain/events.ts";
import type { SnowflakeGenerator } from "../domain/ids.ts";
import { parsePositiveDecimalFast } from "../domain/money.ts";
import type { Principal } from "./auth.ts";
import {
  ConflictError,
  ForbiddenError,
  IdempotencyRecordRejected,
  IntakeFullError,
  InvalidInputError,
  UnavailableError,
} from "./errors.ts";
import { runIdempotent } from "./idempotency.ts";
import type { Answer, EventStore, IdempotencyStore, IntakePublisher } from "./ports.ts";

/** Raw request fields as they arrive (strings from JSON or the path); validated here, not trusted. */
type Raw = Record<string, unknown>;

/**
 * Validates `raw` against the type's fields (EVENT_FIELDS), except those the service fills in itself, and returns
 * the canonical values. The first bad field is named in the error.
 */
function validate<T extends EventBody>(
  type: T["type"],
  raw: Raw,
  filled: Partial<Record<string, bigint>>,
): T {
  const body: Record<string, unknown> = { type };
  for (const [name, kind] of EVENT_FIELDS[type]) {
    if (name in filled) {
      body[name] = filled[name];
      continue;
    }
    // The string-only decimal check: the same answers as decimal.js's (property-tested in money.unit.test.ts) at a
    // fraction of the cost on every request.
    const checked = checkField(name, kind, raw[name], parsePositiveDecimalFast);
    if (!checked.ok) throw new InvalidInputError(name, checked.reason);
    body[name] = checked.value;
  }
  const problem = crossFieldProblem(body as EventBody);
  if (problem) throw new InvalidInputError(problem.field, problem.reason);
  return body as T;
}

/**
 * The request as the idempotency record keeps it: the type and its validated fields, ids as strings. `minted`
 * fields (CREATE_ORDER's orderId) are left out, so a request and the event built from it give the same text.
 */
export function canonicalRequest(body: EventBody, minted: readonly string[]): string {
  const fields: Record<string, string> = { type: body.type };
  for (const [name] of EVENT_FIELDS[body.type]) {
    if (!minted.includes(name)) fields[name] = String((body as unknown as Record<string, unknown>)[name]);
  }
  return JSON.stringify(fields);
}

export class IntakeService {
  constructor(
    private readonly ids: SnowflakeGenerator,
    private readonly publisher: IntakePublisher,
    private readonly idempotency: IdempotencyStore | undefined,
    private readonly log: Pick<EventStore, "find"> | undefined,
    private readonly now: () => Date = () => new Date(),
  ) {}

  createOrder(principal: Principal, raw: Raw, idempotencyKey?: string): Promise<Answer> {
    const body = validate<CreateOrder>("CREATE_ORDER", raw, { userId: principal.userId, orderId: 0n });
    return this.accept(principal, body, ["orderId"], idempotencyKey);
  }

  cancelOrder(principal: Principal, orderId: unknown, idempotencyKey?: string): Promise<Answer> {
    const body = validate<CancelOrder>("CANCEL_ORDER", { orderId }, { userId: principal.userId });
    return this.accept(principal, body, [], idempotencyKey);
  }

  deposit(principal: Principal, raw: Raw, idempotencyKey?: string): Promise<Answer> {
    requireAdmin(principal);
    return this.accept(principal, validate<Deposit>("DEPOSIT", raw, {}), [], idempotencyKey);
  }

  transfer(principal: Principal, raw: Raw, idempotencyKey?: string): Promise<Answer> {
    requireAdmin(principal);
    return this.accept(principal, validate<Transfer>("TRANSFER", raw, {}), [], idempotencyKey);
  }

  private async accept(
    principal: Principal,
    body: EventBody,
    minted: readonly "orderId"[],
    idempotencyKey: string | undefined,
  ): Promise<Answer> {
    if (idempotencyKey !== undefined && !isClientIdempotencyKey(idempotencyKey)) {
      throw new InvalidInputError(
        "Idempotency-Key",
        "Idempotency-Key must be 1-64 characters of A-Z a-z 0-9 _ -",
      );
    }
    const scopedKey = idempotencyKey === undefined ? undefined : `${principal.userId}:${idempotencyKey}`;
    const build = (): Intake => {
      const referenceId = this.ids.next();
      const event = { ...body, referenceId, createdAt: this.now().toISOString(), idempotencyKey: scopedKey };
      for (const name of minted) (event as Record<string, unknown>)[name] = this.ids.next();
      return event as Intake;
    };
    const answer = (event: Pick<Intake, "type" | "referenceId"> & { orderId?: bigint | string }): Answer =>
      event.orderId !== undefined && (event.type === "CREATE_ORDER" || event.type === "CANCEL_ORDER")
        ? { referenceId: event.referenceId.toString(), orderId: event.orderId.toString() }
        : { referenceId: event.referenceId.toString() };

    if (idempotencyKey === undefined || scopedKey === undefined || !this.idempotency) {
      const event = build();
      await this.publish(event);
      return answer(event);
    }
    try {
      return await runIdempotent(
        this.idempotency,
        scopedKey.replace(":", "."),
        canonicalRequest(body, minted),
        {
          build,
          encode: encodeIntakeEvent,
          decode: (text) => {
            const decoded = decodeIntakeEvent(text);
            if (!decoded.ok)
              throw new Error(`stored idempotency record is not a valid event: ${decoded.reason}`);
            return decoded.event;
          },
          publish: (event) => this.publish(event),
          answer,
          requestOf: (event) => canonicalRequest(event, minted),
          scope: { userId: principal.userId.toString(), key: idempotencyKey, eventKey: scopedKey },
          logged: async () => {
            const record = await this.log?.find({ idempotencyKey: scopedKey });
            if (!record) return null;
            // The stored payload is the sequenced event's JSON: its type fields rebuild the canonical request.
            const stored = JSON.parse(record.payload) as EventBody & {
              referenceId: string;
              orderId?: string;
            };
            return {
              request: canonicalRequest(stored, minted),
              answer: answer({ ...stored, referenceId: BigInt(stored.referenceId) }),
            };
          },
        },
      );
    } catch (error) {
      // A conflict is the client's to fix, and a rejected record needs a new key; anything else (the KV bucket
      // or the database unreachable) means the request could not be recorded now, and retrying with the same
      // key is safe.
      if (
        error instanceof ConflictError ||
        error instanceof UnavailableError ||
        error instanceof IdempotencyRecordRejected
      )
        throw error;
      throw new UnavailableError(
        "the request could not be recorded now; retry with the same Idempotency-Key",
        1,
        {
          cause: error,
        },
      );
    }
  }

  private async publish(event: Intake): Promise<void> {
    try {
      await this.publisher.publish(event);
    } catch (error) {
      if (error instanceof IntakeFullError) {
        // Not an outage: the sequencer is behind or stopped (or the broker's disk is full); give it time.
        throw new UnavailableError(`the order intake is full (${error.message}); retry later`, 5, {
          cause: error,
        });
      }
      throw new UnavailableError("the request could not be written to the intake stream; retry later", 1, {
        cause: error,
      });
    }
  }
}

function requireAdmin(principal: Principal): void {
  if (!principal.admin) throw new ForbiddenError("this route needs an admin token");
}
