/**
 * JavaScriptCore paces its garbage collector by the machine's RAM: on a box with many GiB it lets garbage pile
 * up before collecting, and the sequencer's peak RSS during a 200k-event backlog reached 205–215 MB. Told that
 * the machine has 512 MiB, it collects sooner: ~148 MB at the same throughput (docs/performance.md). This is a
 * pacing hint, not a limit — a heap that needs more still grows.
 *
 * JavaScriptCore reads its options from the environment once, when the process starts (a `.env` file is loaded
 * too late), so whatever launches the service sets it: `npm start` (package.json), compose.yaml and the bench's
 * service processes all carry this value, which test/unit/compose.unit.test.ts holds them to.
 */
export const SERVICE_HEAP_ENV = { BUN_JSC_forceRAMSize: String(512 * 1024 * 1024) } as const;
