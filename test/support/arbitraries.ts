/** fast-check arbitraries shared by the unit tests. */
import fc from "fast-check";

/** ISO-8601 instants (UTC, milliseconds) between 2000 and 2999: what createdAt / sequencedAt hold. */
export const isoArb = fc
  .date({
    min: new Date("2000-01-01T00:00:00.000Z"),
    max: new Date("2999-12-31T23:59:59.999Z"),
    noInvalidDate: true,
  })
  .map((d) => d.toISOString());
