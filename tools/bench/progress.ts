/**
 * One progress line on stderr while the bench runs: rewritten in place every second on a terminal, one line per
 * step otherwise (CI logs).
 */
export class Progress {
  private index = 0;
  private label = "";
  private stepStarted = performance.now();
  private readonly started = performance.now();
  private readonly tty = Boolean(process.stderr.isTTY);
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly total: number) {
    if (this.tty) this.timer = setInterval(() => this.render(), 1_000);
    this.timer?.unref();
  }

  step(label: string): void {
    this.index++;
    this.label = label;
    this.stepStarted = performance.now();
    if (this.tty) this.render();
    else process.stderr.write(`${this.prefix()} ${label}\n`);
  }

  /** A line that stays (a result worth seeing before the table). */
  note(text: string): void {
    if (this.tty) process.stderr.write("\r\x1b[2K");
    process.stderr.write(`  ${text}\n`);
    if (this.tty) this.render();
  }

  done(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.tty) process.stderr.write("\r\x1b[2K");
    process.stderr.write(`bench finished in ${((performance.now() - this.started) / 1000).toFixed(1)} s\n`);
  }

  private prefix(): string {
    return `[bench ${this.index}/${this.total} ${((performance.now() - this.started) / 1000).toFixed(0)}s]`;
  }

  private render(): void {
    const stepS = ((performance.now() - this.stepStarted) / 1000).toFixed(0);
    const line = `${this.prefix()} ${this.label} (${stepS}s)`;
    const width = process.stderr.columns ?? 120;
    process.stderr.write(`\r\x1b[2K${line.slice(0, width - 1)}`);
  }
}
