/**
 * A downstream reader in its own runtime (Deno, or Node through a bundle): imports the library by the package's
 * name, reads TRADING from `after` up to `until` and prints one line per event, `<sequenceId> <digest>`.
 * argv: <nats url> <after> <until> [previousDigest]
 */
import process from "node:process";
import { subscribeTrading } from "exactly-once-sequencer/trading";

const [url, after, until, previousDigest] = process.argv.slice(2);
if (!url || !after || !until) throw new Error("usage: <nats url> <after> <until> [previousDigest]");
for await (const e of subscribeTrading({
  servers: url,
  after: BigInt(after),
  until: BigInt(until),
  ...(previousDigest ? { previousDigest } : {}),
})) {
  process.stdout.write(`${e.sequenceId} ${e.digest}\n`);
}
