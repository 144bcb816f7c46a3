/**
 * What the pre-parse JSON scan (src/adapters/http/json-scan.ts) costs per request body:
 * `bun tools/bench/json-scan-cost.ts`. Prints µs per body for JSON.parse alone and for scan + JSON.parse.
 */
import { scanJson } from "../../src/adapters/http/json-scan.ts";

const bodies: Record<string, string> = {
  order: JSON.stringify({ direction: "BUY", price: "100.5", quantity: "2" }),
  transfer: JSON.stringify({ fromUserId: "42", toUserId: "43", assetId: "1", amount: "10.5" }),
  "16 KB object": JSON.stringify(Object.fromEntries(Array.from({ length: 700 }, (_, i) => [`k${i}`, "v"]))),
  "16 KB string": JSON.stringify({ pad: "x".repeat(16_000) }),
};

function perCallUs(fn: () => void, iterations: number): number {
  for (let i = 0; i < iterations / 10; i++) fn(); // warm-up
  const started = performance.now();
  for (let i = 0; i < iterations; i++) fn();
  return ((performance.now() - started) * 1000) / iterations;
}

for (const [name, text] of Object.entries(bodies)) {
  const n = text.length > 1000 ? 20_000 : 1_000_000;
  const parse = perCallUs(() => JSON.parse(text), n);
  const scan = perCallUs(() => scanJson(text), n);
  const both = perCallUs(() => {
    if (scanJson(text).ok) JSON.parse(text);
  }, n);
  console.log(
    `${name.padEnd(14)} ${String(text.length).padStart(6)} B  JSON.parse ${parse.toFixed(3)} µs  scan ${scan.toFixed(3)} µs  scan+parse ${both.toFixed(3)} µs`,
  );
}
