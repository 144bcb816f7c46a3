/** Loopback port helpers shared by the embedded nats-server, the local test/bench services and the cluster test. */
import { createServer, connect as tcpConnect } from "node:net";

/** Ports this process has handed out: the kernel may offer a released port again at once. */
const handedOut = new Set<number>();
/** Asks again at most this often for a port not handed out before; then takes what the kernel offers. */
const FRESH_PORT_ATTEMPTS = 50;

/**
 * Asks the kernel for an unused loopback port. Racy in theory (someone may take it before it is used), but on
 * loopback that is good enough and avoids hard-coded ports colliding. Within one process it never hands out the
 * same port twice while it can find another: callers often take several ports before binding any (a service's
 * PORT and OPS_PORT, several services), and the kernel offered a just-released port again, so two listeners were
 * given one port (a fault test once polled another process's /readyz on its sequencer's ops port).
 */
export async function freePort(): Promise<number> {
  let port = await kernelPort();
  for (let attempt = 1; attempt < FRESH_PORT_ATTEMPTS && handedOut.has(port); attempt++)
    port = await kernelPort();
  handedOut.add(port);
  return port;
}

function kernelPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") {
        server.close();
        reject(new Error("freePort: listener has no TCP address"));
        return;
      }
      server.close(() => resolve(address.port));
    });
  });
}

export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** True when something accepts a TCP connection on the loopback port (within a second). */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}
