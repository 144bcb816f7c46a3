/**
 * `exactly-once-sequencer/trading`: the library a downstream service (a matching engine) reads TRADING with.
 * subscribeTrading (or subscribeTradingBatches, arrays of them) yields the sequenced events after a sequenceId,
 * decoded, in order, each exactly once across reconnects and broker restarts, with positions and the digest chain
 * checked; the errors say where and why it stopped. See trading-subscriber.ts for the options, who may use it and how each runtime imports it.
 */

export { NatsAuthenticationError } from "../adapters/nats/connection.ts";
export type { NatsCredentials } from "../adapters/nats/credentials.ts";
export { ZERO_DIGEST } from "../app/log-digest.ts";
export type { Direction, EventBody, EventType, SequencedEvent } from "../domain/events.ts";
export {
  type RawTradingMessage,
  type ReceivedTradingMessage,
  TradingChecker,
  type TradingEvent,
} from "./trading-check.ts";
export {
  TradingAccessError,
  TradingDigestError,
  TradingGapError,
  TradingInvalidEventError,
  TradingOrderError,
  TradingStreamError,
  TradingTrimmedError,
} from "./trading-errors.ts";
export { decodeTradingEvent } from "./trading-event.ts";
export {
  type SubscribeTradingOptions,
  subscribeTrading,
  subscribeTradingBatches,
} from "./trading-subscriber.ts";
