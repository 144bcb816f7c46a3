/** A KV create conflict is told by the JetStream API error code, not by the words of its message. */
import { describe, expect, test } from "bun:test";
import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { isKeyTaken } from "../../src/adapters/nats/kv-conflict.ts";

const apiError = (err_code: number, description: string) =>
  new JetStreamApiError({ code: 400, err_code, description });

describe("isKeyTaken", () => {
  test("the server's wrong-last-sequence refusals are a taken key", () => {
    expect(isKeyTaken(apiError(JetStreamApiCodes.StreamWrongLastSequence, "wrong last sequence: 7"))).toBe(
      true,
    );
    expect(
      isKeyTaken(apiError(JetStreamApiCodes.StreamWrongLastSequenceUnknown, "wrong last sequence")),
    ).toBe(true);
  });

  test("other failures are not, whatever their message says", () => {
    expect(isKeyTaken(apiError(JetStreamApiCodes.StreamNotFound, "stream not found"))).toBe(false);
    expect(isKeyTaken(apiError(10077, "wrong last sequence in a message store failure"))).toBe(false);
    expect(isKeyTaken(new Error("wrong last sequence: 7"))).toBe(false);
    expect(isKeyTaken(new Error("key exists"))).toBe(false);
    expect(isKeyTaken(undefined)).toBe(false);
  });
});
