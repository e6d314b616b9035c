/**
 * The external calls the seed examples make (payments, subscriptions, user store, e-mail), as recording stubs: the same lines as tests/services/seed_stubs.py.
 */

import { recordSideEffect } from "./side_effects.js";

export type SubscriptionRequest = {
  userId: string;
  creditCard: string;
  subscriptions: string[];
};

export type Item = {
  productId: string;
  price: number;
  quantity: number;
};

export type User = { name: string; email: string };

export function createRecurringPayment(creditCard: string, paymentId: string): string {
  recordSideEffect(`payment ${creditCard} ${paymentId}`);
  return `payref-${paymentId}`;
}

export function createSubscription(userId: string, subscription: string, payRef: string): string {
  recordSideEffect(`subscription ${userId} ${subscription} ${payRef}`);
  return "ok";
}

export function createUserEntry({ userId }: { userId: string; user: User }): void {
  recordSideEffect(`user-entry ${userId}`);
}

export function sendVerificationEmail({ user, secret }: { user: User; secret: string }): void {
  recordSideEffect(`email ${user.email} ${secret}`);
}
