package main

// The seed examples' external calls (payments, subscriptions, user store, e-mail), as stubs
// that record one side-effect line each.

import (
	restate "github.com/restatedev/sdk-go"
)

func createRecurringPayment(creditCard string, paymentId string) (string, error) {
	recordSideEffect("payment " + creditCard + " " + paymentId)
	return "payref-" + paymentId, nil
}

func createSubscription(userId string, subscription string, payRef string) (string, error) {
	recordSideEffect("subscription " + userId + " " + subscription + " " + payRef)
	return "ok", nil
}

func createUserEntry(userId string, user User) (restate.Void, error) {
	recordSideEffect("user-entry " + userId)
	return restate.Void{}, nil
}

func sendVerificationEmail(user User, secret string) (restate.Void, error) {
	recordSideEffect("email " + user.Email + " " + secret)
	return restate.Void{}, nil
}
