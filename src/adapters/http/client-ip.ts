/**
 * The peer address of each request, as the runtime's listener saw it (src/runtime/http-server.ts sets it). Never
 * taken from X-Forwarded-For or any other header: a client could write any address there. Requests handled
 * in-process (app.handle in tests) have none, and are not limited per address.
 */
const addresses = new WeakMap<Request, string>();

export function setClientIp(request: Request, address: string | undefined): void {
  if (address) addresses.set(request, address);
}

export function clientIp(request: Request): string | undefined {
  return addresses.get(request);
}
