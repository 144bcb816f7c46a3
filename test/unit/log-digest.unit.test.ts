/** The digest chain: digest_N = SHA-256(digest_{N-1} ‖ UTF-8(payload_N)), digest_0 = 32 zero bytes. */
import { describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import fc from "fast-check";
import {
  ByteDigestChain,
  chainDigest,
  chainDigests,
  DigestChain,
  digestFromHex,
  digestToHex,
  isDigestHex,
  ZERO_DIGEST,
} from "../../src/app/log-digest.ts";
import { EMPTY_HEAD } from "../../src/domain/sequencing.ts";

const payloadArb = fc.string({ unit: "binary", maxLength: 200 });
const payloadsArb = fc.array(payloadArb, { minLength: 1, maxLength: 30 });

describe("log digest", () => {
  test("digest_0 is 32 zero bytes, and the empty head carries it", () => {
    expect(ZERO_DIGEST).toBe("0".repeat(64));
    expect(digestFromHex(ZERO_DIGEST)).toEqual(new Uint8Array(32));
    expect(EMPTY_HEAD.digest).toBe(ZERO_DIGEST);
  });

  test("one link is SHA-256 of the previous digest's raw bytes followed by the payload's UTF-8 bytes", () => {
    const payload = '{"sequenceId":"1","note":"é ✓ 😀"}';
    const expected = createHash("sha256")
      .update(Buffer.concat([Buffer.alloc(32), Buffer.from(payload, "utf8")]))
      .digest("hex");
    expect(chainDigests(ZERO_DIGEST, [payload])).toEqual([expected]);
    // A known answer, independent of this code: sha256 of 32 zero bytes followed by "{}".
    expect(chainDigests(ZERO_DIGEST, ["{}"])[0]).toBe(
      createHash("sha256")
        .update(new Uint8Array([...new Uint8Array(32), 0x7b, 0x7d]))
        .digest("hex"),
    );
  });

  test("chaining in pieces (batch after batch, from the previous head) gives the same digests as in one go", () => {
    fc.assert(
      fc.property(payloadsArb, fc.nat(), (payloads, cut) => {
        const at = cut % (payloads.length + 1);
        const whole = chainDigests(ZERO_DIGEST, payloads);
        const first = chainDigests(ZERO_DIGEST, payloads.slice(0, at));
        const rest = chainDigests(first[first.length - 1] ?? ZERO_DIGEST, payloads.slice(at));
        expect([...first, ...rest]).toEqual(whole);
        const chain = new DigestChain();
        for (const p of payloads) chain.next(p);
        expect(chain.head).toBe(whole[whole.length - 1] ?? ZERO_DIGEST);
      }),
    );
  });

  test("the chain (one reused buffer, one-shot hash) equals chainDigest link by link, long payloads included", () => {
    const longArb = fc.string({ unit: "binary", minLength: 300, maxLength: 3000 });
    fc.assert(
      fc.property(fc.array(fc.oneof(payloadArb, longArb), { minLength: 1, maxLength: 20 }), (payloads) => {
        let previous: Uint8Array = new Uint8Array(32);
        const expected = payloads.map((payload) => {
          previous = chainDigest(previous, payload);
          return digestToHex(previous);
        });
        expect(chainDigests(ZERO_DIGEST, payloads)).toEqual(expected);
      }),
    );
  });

  test("the chain over bytes (a reader's received bodies) gives the same digests, from any starting digest", () => {
    const longArb = fc.string({ unit: "binary", minLength: 300, maxLength: 3000 });
    fc.assert(
      fc.property(
        fc.array(fc.oneof(payloadArb, longArb), { minLength: 1, maxLength: 20 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        (payloads, start) => {
          const from = digestToHex(start);
          const chain = new ByteDigestChain(from);
          const digests = payloads.map((p) => digestToHex(chain.next(Buffer.from(p, "utf8"))));
          expect(digests).toEqual(chainDigests(from, payloads));
        },
      ),
    );
    // Payloads past its buffer (1 KB) grow it; lengths seen before and after a growth still hash the right bytes.
    const lengths = [100, 1_500, 100, 1_500, 5_000, 100, 1_500, 5_000, 100];
    const long = lengths.map((n, i) => String.fromCharCode(97 + i).repeat(n));
    const grown = new ByteDigestChain();
    expect(long.map((p) => digestToHex(grown.next(Buffer.from(p))))).toEqual(chainDigests(ZERO_DIGEST, long));
    // Each link's digest is its own array: keeping one does not see the next.
    const chain = new ByteDigestChain();
    const first = chain.next(Buffer.from("a"));
    const kept = digestToHex(first);
    chain.next(Buffer.from("b"));
    expect(digestToHex(first)).toBe(kept);
  });

  test("changing any byte of any payload changes that event's digest and every later one", () => {
    fc.assert(
      fc.property(
        payloadsArb,
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 1, max: 0xffff }),
        (payloads, i, j, delta) => {
          const index = i % payloads.length;
          const original = payloads[index] ?? "";
          // Change one UTF-16 unit (or append one to an empty payload): the UTF-8 bytes differ.
          const at = original.length === 0 ? 0 : j % original.length;
          const code = ((original.charCodeAt(at) || 0) + delta) % 0x10000;
          const changed =
            original.length === 0
              ? String.fromCharCode(code)
              : original.slice(0, at) + String.fromCharCode(code) + original.slice(at + 1);
          fc.pre(Buffer.compare(Buffer.from(changed, "utf8"), Buffer.from(original, "utf8")) !== 0);
          const tampered = payloads.map((p, k) => (k === index ? changed : p));
          const before = chainDigests(ZERO_DIGEST, payloads);
          const after = chainDigests(ZERO_DIGEST, tampered);
          expect(after.slice(0, index)).toEqual(before.slice(0, index));
          for (let k = index; k < payloads.length; k++) expect(after[k]).not.toBe(before[k]);
        },
      ),
    );
  });

  test("swapping two different payloads changes the digest at the first of them and every later one", () => {
    fc.assert(
      fc.property(payloadsArb, fc.nat(), fc.nat(), (payloads, i, j) => {
        const a = i % payloads.length;
        const b = j % payloads.length;
        const [lo, hi] = a < b ? [a, b] : [b, a];
        fc.pre(payloads[lo] !== payloads[hi]);
        const swapped = [...payloads];
        swapped[lo] = payloads[hi] ?? "";
        swapped[hi] = payloads[lo] ?? "";
        const before = chainDigests(ZERO_DIGEST, payloads);
        const after = chainDigests(ZERO_DIGEST, swapped);
        for (let k = lo; k < payloads.length; k++) expect(after[k]).not.toBe(before[k]);
      }),
    );
  });

  test("a different starting digest changes every digest", () => {
    fc.assert(
      fc.property(payloadsArb, fc.uint8Array({ minLength: 32, maxLength: 32 }), (payloads, start) => {
        const from = digestToHex(start);
        fc.pre(from !== ZERO_DIGEST);
        const a = chainDigests(ZERO_DIGEST, payloads);
        const b = chainDigests(from, payloads);
        for (const [k, d] of a.entries()) expect(b[k]).not.toBe(d);
      }),
    );
  });

  test("hex helpers: 64 lowercase hex characters round-trip; anything else is refused", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const hex = digestToHex(bytes);
        expect(isDigestHex(hex)).toBe(true);
        expect(digestFromHex(hex)).toEqual(bytes);
        expect(digestToHex(chainDigest(bytes, "x"))).toHaveLength(64);
      }),
    );
    for (const bad of ["", "0".repeat(63), "0".repeat(65), "A".repeat(64), "g".repeat(64)]) {
      expect(isDigestHex(bad)).toBe(false);
      expect(() => digestFromHex(bad)).toThrow();
    }
    expect(() => digestToHex(new Uint8Array(31))).toThrow();
  });
});
