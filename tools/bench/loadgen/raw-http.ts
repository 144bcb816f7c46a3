/**
 * A small HTTP/1.1 client for the soak's open loop: keep-alive connections over Bun.connect, one request at a time
 * on each (as a browser or an SDK would send them; no pipelining), every request written from bytes prepared once.
 * Bun's `fetch` cost the generator ~50 µs of CPU a request, taken from the service it measures on this 2-core box
 * (docs/performance.md, "the soak generator"). It reads what the bench's target answers: a status line, headers,
 * and a Content-Length or chunked body; anything else fails that request (status 0 in the soak's report).
 */
import type { Socket } from "bun";

export type RawAnswer = { status: number; body: string };

/** One parsed response at the start of a buffer: its status, body, the bytes it took, and whether it closes. */
export type ParsedResponse = { status: number; body: Buffer; used: number; close: boolean };

export class RawHttpError extends Error {
  override readonly name = "RawHttpError";
}

const HEAD_END = Buffer.from("\r\n\r\n");
const LINE_END = Buffer.from("\r\n");
const NOTHING = Buffer.alloc(0);
/** A response head larger than this is not one the bench's target sends. */
const MAX_HEAD_BYTES = 16 * 1024;

/**
 * Parses the HTTP/1.1 response at the start of `buf`: null while it is incomplete; throws RawHttpError on what is
 * not a response this client reads (no status line, neither Content-Length nor chunked, a malformed chunk size).
 */
export function parseResponse(buf: Buffer): ParsedResponse | null {
  const headEnd = buf.indexOf(HEAD_END);
  if (headEnd < 0) {
    if (buf.length > MAX_HEAD_BYTES) throw new RawHttpError("response head too large");
    return null;
  }
  const head = buf.toString("latin1", 0, headEnd);
  const lines = head.split("\r\n");
  const statusLine = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "");
  if (!statusLine) throw new RawHttpError(`not an HTTP/1.1 status line: ${JSON.stringify(lines[0])}`);
  let length = -1;
  let chunked = false;
  let close = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line
      .slice(colon + 1)
      .trim()
      .toLowerCase();
    if (name === "content-length") length = Number(value);
    else if (name === "transfer-encoding") chunked = value.includes("chunked");
    else if (name === "connection") close = value === "close";
  }
  const bodyStart = headEnd + HEAD_END.length;
  const status = Number(statusLine[1]);
  if (chunked) return parseChunked(buf, bodyStart, status, close);
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new RawHttpError("response has neither a Content-Length nor a chunked body");
  }
  if (buf.length < bodyStart + length) return null;
  return { status, body: buf.subarray(bodyStart, bodyStart + length), used: bodyStart + length, close };
}

function parseChunked(buf: Buffer, from: number, status: number, close: boolean): ParsedResponse | null {
  const parts: Buffer[] = [];
  let at = from;
  for (;;) {
    const lineEnd = buf.indexOf(LINE_END, at);
    if (lineEnd < 0) return null;
    const sizeText = buf.toString("latin1", at, lineEnd).split(";")[0]?.trim() ?? "";
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText))
      throw new RawHttpError(`bad chunk size ${JSON.stringify(sizeText)}`);
    const size = Number.parseInt(sizeText, 16);
    const dataStart = lineEnd + LINE_END.length;
    if (size === 0) {
      // No trailers from the bench's target: the last chunk is followed by the empty line.
      if (buf.length < dataStart + LINE_END.length) return null;
      return { status, body: Buffer.concat(parts), used: dataStart + LINE_END.length, close };
    }
    if (buf.length < dataStart + size + LINE_END.length) return null;
    parts.push(buf.subarray(dataStart, dataStart + size));
    at = dataStart + size + LINE_END.length;
  }
}

/**
 * How long an idle keep-alive connection is reused: well under the service's idle timeout (BODY_TIMEOUT + 5 s,
 * at least 6 s; src/composition/listeners.ts), as HTTP clients keep theirs (undici: 4 s), so the generator never
 * sends into a connection the server is closing for idleness. A soak at half load leaves the connections opened
 * in a start-up burst idle for longer; in ~3 of 10 earlier tails 19–29 requests got no answer ("failed"), all in
 * the row where those connections reached the server's timeout — this race is the suspected cause (the soak now
 * records each failure's reason).
 */
export const KEEP_IDLE_MS = 4_000;

type Waiter = { resolve(answer: RawAnswer): void; reject(error: Error): void; startedMs: number };

/** One keep-alive connection: at most one request in flight. */
class Connection {
  private received: Buffer = NOTHING;
  private unsent: Uint8Array | null = null;
  waiter: Waiter | null = null;
  closed = false;
  socket: Socket<undefined> | null = null;
  /** When it last went back to the idle list (performance.now()). */
  idleSinceMs = 0;

  constructor(private readonly release: (connection: Connection) => void) {}

  send(bytes: Uint8Array, waiter: Waiter): void {
    this.waiter = waiter;
    this.write(bytes);
  }

  private write(bytes: Uint8Array): void {
    const socket = this.socket;
    if (!socket) {
      this.fail(new RawHttpError("not connected"));
      return;
    }
    const written = socket.write(bytes);
    if (written < 0) {
      this.fail(new RawHttpError("the connection is closed"));
      return;
    }
    this.unsent = written < bytes.length ? bytes.subarray(Math.max(0, written)) : null;
  }

  drain(): void {
    if (this.unsent) this.write(this.unsent);
  }

  data(chunk: Buffer): void {
    this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
    let parsed: ParsedResponse | null;
    try {
      parsed = parseResponse(this.received);
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    if (!parsed) return;
    const waiter = this.waiter;
    if (!waiter || parsed.used !== this.received.length) {
      this.fail(new RawHttpError("bytes from the server with no request waiting for them"));
      return;
    }
    this.received = NOTHING;
    this.waiter = null;
    if (parsed.close) this.end();
    else this.release(this);
    waiter.resolve({ status: parsed.status, body: parsed.body.toString("utf8") });
  }

  /** Fails the request in flight (if any) and closes the connection; it is never reused. */
  fail(error: Error): void {
    const waiter = this.waiter;
    this.waiter = null;
    this.end();
    waiter?.reject(error);
  }

  end(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket?.end();
  }
}

/**
 * Sends requests to one http:// URL. `requests` are the complete request bytes, taken in turn (one per
 * authorization). `timeoutMs` bounds every request (checked once a second, so a late answer fails within a second
 * after it).
 */
export class RawHttpClient {
  private readonly idle: Connection[] = [];
  private readonly busy = new Set<Connection>();
  private readonly host: string;
  private readonly port: number;
  private turn = 0;
  private sweeper: ReturnType<typeof setInterval> | undefined;

  constructor(
    url: string,
    private readonly requests: readonly Uint8Array[],
    private readonly timeoutMs: number,
    private readonly keepIdleMs = KEEP_IDLE_MS,
  ) {
    const parsed = new URL(url);
    if (parsed.protocol !== "http:") throw new RawHttpError(`only http:// targets (got ${parsed.protocol})`);
    if (requests.length === 0) throw new RawHttpError("no request to send");
    this.host = parsed.hostname;
    this.port = Number(parsed.port || 80);
  }

  /** Keep-alive connections waiting for the next request. */
  get idleConnections(): number {
    return this.idle.length;
  }

  /** The bytes of a POST with these headers and body (Host and Content-Length added). */
  static post(url: string, headers: Record<string, string>, body: string): Uint8Array {
    const { host, pathname, search } = new URL(url);
    const bodyBytes = Buffer.from(body, "utf8");
    let head = `POST ${pathname}${search} HTTP/1.1\r\nhost: ${host}\r\ncontent-length: ${bodyBytes.length}\r\n`;
    for (const [name, value] of Object.entries(headers)) {
      if (/[\r\n]/.test(name + value)) throw new RawHttpError(`header ${name} has a line break`);
      head += `${name}: ${value}\r\n`;
    }
    return Buffer.concat([Buffer.from(`${head}\r\n`, "latin1"), bodyBytes]);
  }

  async request(): Promise<RawAnswer> {
    this.sweeper ??= setInterval(() => this.sweep(), 1_000);
    const connection = this.freshIdle() ?? (await this.connect());
    this.busy.add(connection);
    this.turn = (this.turn + 1) % this.requests.length;
    const bytes = this.requests[this.turn] as Uint8Array;
    try {
      return await new Promise<RawAnswer>((resolve, reject) =>
        connection.send(bytes, { resolve, reject, startedMs: performance.now() }),
      );
    } finally {
      this.busy.delete(connection);
    }
  }

  /** Closes every connection (requests in flight fail). */
  close(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    for (const connection of [...this.idle, ...this.busy]) connection.fail(new RawHttpError("client closed"));
    this.idle.length = 0;
  }

  /**
   * The most recently used idle connection, unless it has been idle for keepIdleMs: then it and every older
   * one are closed (the server may be closing them at this moment: a request written into a connection it
   * closes gets no answer).
   */
  private freshIdle(): Connection | undefined {
    const connection = this.idle.pop();
    if (connection === undefined || performance.now() - connection.idleSinceMs < this.keepIdleMs)
      return connection;
    connection.end();
    for (const older of this.idle.splice(0)) older.end();
    return undefined;
  }

  private sweep(): void {
    const now = performance.now();
    for (const connection of this.busy) {
      const waiter = connection.waiter;
      if (waiter && now - waiter.startedMs > this.timeoutMs) {
        connection.fail(new RawHttpError(`no answer within ${this.timeoutMs} ms`));
      }
    }
  }

  private async connect(): Promise<Connection> {
    const connection = new Connection((c) => {
      if (c.closed) return;
      c.idleSinceMs = performance.now();
      this.idle.push(c);
    });
    const gone = (error: Error) => {
      connection.closed = true;
      const at = this.idle.indexOf(connection);
      if (at >= 0) this.idle.splice(at, 1);
      connection.fail(error);
    };
    connection.socket = await Bun.connect({
      hostname: this.host,
      port: this.port,
      socket: {
        data: (_socket, chunk) => connection.data(chunk),
        drain: () => connection.drain(),
        close: () => gone(new RawHttpError("connection closed by the server")),
        error: (_socket, error) => gone(error),
      },
    });
    return connection;
  }
}
