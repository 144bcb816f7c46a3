/**
 * The intake use case (the seed's ProduceCreateOrderTradingEvent): validate, mint ids, publish, answer.
 * The answer is given only after JetStream acknowledged the write; if it did not, the caller gets an
 * UnavailableError and must retry — an order is never reported accepted unless it is on the intake stream.
 */

import type { IntakePublisher } from "../adapters/nats/intake-publisher.ts";
import type { Direction, IntakeEvent } from "../domain/events.ts";
import type { SnowflakeGenerator } from "../domain/ids.ts";
import { type DecimalRule, PRICE_RULE, parsePositiveDecimal, QUANTITY_RULE } from "../domain/money.ts";
import { InvalidInputError, UnavailableError } from "./errors.ts";

export type CreateOrderInput = { direction: Direction; price: string; quantity: string };
export type Accepted = { referenceId: bigint; orderId: bigint };

function decimalField(field: string, value: string, rule: DecimalRule): string {
  const check = parsePositiveDecimal(value, rule);
  if (!check.ok) throw new InvalidInputError(field, `${field} ${check.reason}`);
  return check.value;
}

export class OrderIntake {
  constructor(
    private readonly ids: SnowflakeGenerator,
    private readonly publisher: IntakePublisher,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async createOrder(userId: bigint, input: CreateOrderInput): Promise<Accepted> {
    const price = decimalField("price", input.price, PRICE_RULE);
    const quantity = decimalField("quantity", input.quantity, QUANTITY_RULE);
    const event: IntakeEvent = {
      referenceId: this.ids.next(),
      type: "CREATE_ORDER",
      createdAt: this.now().toISOString(),
      userId,
      orderId: this.ids.next(),
      direction: input.direction,
      price,
      quantity,
    };
    try {
      await this.publisher.publish(event);
    } catch (error) {
      throw new UnavailableError("the order could not be written to the intake stream; retry later", 1, {
        cause: error,
      });
    }
    return { referenceId: event.referenceId, orderId: event.orderId };
  }
}
