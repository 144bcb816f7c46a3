/**
 * A PGlite database served over the PostgreSQL wire protocol on a loopback port, so that code taking a
 * `postgres://` URL (postgres.js, child processes, several at once) runs unchanged where no PostgreSQL server can be
 * installed. Used by the test harness as its fallback (tools/services/local-services.ts); never by the service.
 *
 * PGlite is one backend, so clients share it: each client's messages up to a Sync (or a simple Query) run as one
 * unit, and a client inside a transaction block keeps the backend until it is idle again. What this cannot give:
 * per-connection sessions — advisory locks, `pg_backend_pid()` and settings are shared by every client, and closing
 * a connection does not release its locks. Tests of single-writer fencing or killed sessions need a real server.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { PGlite } from "@electric-sql/pglite";

const SSL_REQUEST = 80877103;
const GSS_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3 = 196608;

/** A whole simple-query "ROLLBACK" message, sent for a client that vanished inside a transaction. */
function simpleQuery(text: string): Uint8Array {
  const body = Buffer.from(`${text}\0`, "utf8");
  const msg = Buffer.alloc(5 + body.length);
  msg.write("Q", 0, "latin1");
  msg.writeInt32BE(4 + body.length, 1);
  body.copy(msg, 5);
  return msg;
}

/** The transaction status of the last ReadyForQuery ('Z') in a response: 'I' idle, 'T' in block, 'E' failed. */
function lastReadyStatus(response: Uint8Array): string | null {
  let status: string | null = null;
  let offset = 0;
  const view = Buffer.from(response.buffer, response.byteOffset, response.byteLength);
  while (offset + 5 <= view.length) {
    const type = view[offset];
    const length = view.readInt32BE(offset + 1);
    if (type === 0x5a && length === 5 && offset + 6 <= view.length)
      status = String.fromCharCode(view[offset + 5] ?? 0);
    offset += 1 + length;
  }
  return status;
}

export type PgliteWireServer = {
  port: number;
  url: string;
  /** Drops every client connection (as a server restart would); data stays. */
  dropConnections(): Promise<void>;
  close(): Promise<void>;
};

export async function servePgliteOverWire(
  db: PGlite,
  options: { port?: number } = {},
): Promise<PgliteWireServer> {
  /** The client that holds the backend (inside a transaction or an unfinished extended-protocol exchange). */
  let owner: Socket | null = null;
  /** Units waiting for the backend, in arrival order. */
  const waiting: { client: Socket; run: () => Promise<void> }[] = [];
  let running = false;
  const clients = new Set<Socket>();

  const pump = async () => {
    if (running) return;
    running = true;
    try {
      for (;;) {
        const index = owner === null ? 0 : waiting.findIndex((w) => w.client === owner);
        const next = index < 0 ? undefined : waiting.splice(index, 1)[0];
        if (next === undefined) return;
        await next.run();
      }
    } finally {
      running = false;
    }
  };

  const exec = (client: Socket, messages: Uint8Array[], final: boolean) =>
    new Promise<void>((resolve) => {
      waiting.push({
        client,
        run: async () => {
          try {
            for (const message of messages) {
              const response = await db.execProtocolRaw(message);
              if (response.length > 0 && !client.destroyed) client.write(response);
              const status = lastReadyStatus(response);
              if (status !== null) owner = status === "I" ? null : client;
            }
            // Mid extended-protocol (Flush, no Sync yet): keep the backend until this client's Sync.
            if (!final) owner = client;
          } catch (error) {
            // PGlite itself failed (not an SQL error, which comes back as an ErrorResponse): drop the client.
            client.destroy(error instanceof Error ? error : new Error(String(error)));
            if (owner === client) owner = null;
          } finally {
            resolve();
          }
        },
      });
      void pump();
    });

  /** Runs once every unit of the closed client has run (see "close" below), so none of its units still waits. */
  const release = async (client: Socket) => {
    clients.delete(client);
    if (owner !== client) return;
    // It left inside a transaction: end it as PostgreSQL would when a session ends.
    waiting.unshift({
      client,
      run: async () => {
        if (db.isInTransaction()) await db.execProtocolRaw(simpleQuery("ROLLBACK")).catch(() => {});
        if (owner === client) owner = null;
      },
    });
    await pump();
  };

  const handle = (client: Socket) => {
    clients.add(client);
    client.setNoDelay(true);
    let buffer: Buffer = Buffer.alloc(0);
    let started = false;
    let pending: Uint8Array[] = [];
    // Messages are handled strictly in order per client: each unit waits for the previous one.
    let chain = Promise.resolve();

    client.on("data", (chunk: Buffer) => {
      buffer = buffer.length === 0 ? chunk : Buffer.concat([buffer, chunk]);
      for (;;) {
        if (!started) {
          if (buffer.length < 8) return;
          const length = buffer.readInt32BE(0);
          const code = buffer.readInt32BE(4);
          if (buffer.length < length) return;
          const message = buffer.subarray(0, length);
          buffer = buffer.subarray(length);
          if (code === SSL_REQUEST || code === GSS_REQUEST) {
            client.write("N");
            continue;
          }
          if (code === CANCEL_REQUEST) {
            client.end(); // no separate backend to interrupt
            return;
          }
          if (code !== PROTOCOL_3) {
            client.destroy();
            return;
          }
          started = true;
          const startup = new Uint8Array(message);
          chain = chain.then(() => exec(client, [startup], true));
          continue;
        }
        if (buffer.length < 5) return;
        const length = buffer.readInt32BE(1);
        if (buffer.length < 1 + length) return;
        const type = String.fromCharCode(buffer[0] ?? 0);
        const message = new Uint8Array(buffer.subarray(0, 1 + length));
        buffer = buffer.subarray(1 + length);
        if (type === "X") {
          client.end();
          return;
        }
        pending.push(message);
        // A unit ends where the client waits for an answer: Sync, a simple Query, or a Flush.
        if (type === "S" || type === "Q" || type === "H") {
          const unit = pending;
          pending = [];
          chain = chain.then(() => exec(client, unit, type !== "H"));
        }
      }
    });
    client.on("error", () => {});
    client.on("close", () => {
      void chain.then(() => release(client));
    });
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string")
    throw new Error("PGlite wire server has no TCP address");
  const port = address.port;

  const dropAll = async () => {
    const closed = [...clients].map(
      (c) => new Promise<void>((r) => (c.destroyed ? r() : c.once("close", () => r()))),
    );
    for (const c of clients) c.destroy();
    await Promise.all(closed);
  };

  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    dropConnections: dropAll,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        void dropAll();
      });
    },
  };
}
