/**
 * The growth phase's synthetic log (tools/bench/growth-log.ts): events the service would have stored — each
 * payload the sequencer's encoding of a valid event, numbered 1..N with previous_id = sequence_id − 1, digests
 * chained as src/app/log-digest.ts chains them, unique reference ids older than any generated now — the same
 * bytes on every run of the same shape (the TRADING fill regenerates them), and COPY lines escaped.
 */
import { expect, test } from "bun:test";
import { chainDigests, ZERO_DIGEST } from "../../src/app/log-digest.ts";
import { decodeIntakeFields, encodeSequencedEvent } from "../../src/domain/events.ts";
import { SnowflakeGenerator } from "../../src/domain/ids.ts";
import { copyLines, type LogRow, logChunks, logShape } from "../../tools/bench/growth-log.ts";

const shape = logShape(2_500);
const rows = [...logChunks(shape)].flat();

test("the log is 1..N in chunks of a sequencer batch, each row what the sequencer would store", () => {
  expect([...logChunks(shape)].map((chunk) => chunk.length)).toEqual([1_000, 1_000, 500]);
  expect(rows.map((r) => r.sequenceId)).toEqual(Array.from({ length: 2_500 }, (_, i) => BigInt(i + 1)));
  for (const row of rows) {
    const { sequenceId, previousId, sequencedAt, ...intake } = JSON.parse(row.payload) as Record<
      string,
      string
    >;
    expect([sequenceId, previousId, sequencedAt]).toEqual([
      String(row.sequenceId),
      String(row.sequenceId - 1n),
      row.sequencedAt,
    ]);
    const decoded = decodeIntakeFields(intake);
    if (!decoded.ok) throw new Error(`event ${row.sequenceId}: ${decoded.reason}`);
    expect(decoded.event.referenceId).toBe(row.referenceId);
    expect(
      encodeSequencedEvent({
        ...decoded.event,
        sequenceId: row.sequenceId,
        previousId: row.sequenceId - 1n,
        sequencedAt: row.sequencedAt,
      }),
    ).toBe(row.payload);
  }
  expect(new Set(rows.map((r) => r.type))).toEqual(new Set(["CREATE_ORDER", "CANCEL_ORDER", "TRANSFER"]));
  expect(rows.filter((r) => r.counterpartyId !== null).every((r) => r.type === "TRANSFER")).toBe(true);
});

test("the digests chain from the genesis digest, and the same shape gives the same bytes", () => {
  expect(rows.map((r) => r.digest)).toEqual(
    chainDigests(
      ZERO_DIGEST,
      rows.map((r) => r.payload),
    ),
  );
  expect([...logChunks(shape)].flat()).toEqual(rows);
});

test("reference ids are unique, increasing, and older than any generated now", () => {
  const ids = rows.map((r) => r.referenceId);
  expect(new Set(ids).size).toBe(ids.length);
  expect(ids.every((id, i) => i === 0 || id > (ids[i - 1] as bigint))).toBe(true);
  expect((ids[ids.length - 1] as bigint) < new SnowflakeGenerator(1000).next()).toBe(true);
});

test("COPY lines: one per row, NULLs as \\N, the digest as bytea hex, special characters escaped", () => {
  const row = rows[96] as LogRow; // event 97: a transfer
  const [line] = copyLines([row]).split("\n");
  const fields = (line ?? "").split("\t");
  expect(fields).toHaveLength(11);
  expect(fields[9]).toBe(`\\\\x${row.digest}`);
  expect(fields[10]).toBe(String(row.counterpartyId));
  const odd = { ...row, payload: "a\\b\tc\nd\re", idempotencyKey: null, counterpartyId: null };
  const oddFields = copyLines([odd]).slice(0, -1).split("\t");
  expect(oddFields[5]).toBe("a\\\\b\\tc\\nd\\re");
  expect([oddFields[6], oddFields[10]]).toEqual(["\\N", "\\N"]);
});
