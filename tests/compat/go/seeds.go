package main

// The seed document's three examples, as the seed's Go code; only the request types and the
// stubbed external calls (stubs.go) are this project's.

import (
	restate "github.com/restatedev/sdk-go"
)

// SubscriptionRequest is the subscription seed's input.
type SubscriptionRequest struct {
	UserId        string   `json:"userId"`
	CreditCard    string   `json:"creditCard"`
	Subscriptions []string `json:"subscriptions"`
}

// Item is one shopping-cart line.
type Item struct {
	ProductId string  `json:"productId"`
	Price     float64 `json:"price"`
	Quantity  int     `json:"quantity"`
}

// User is the signup workflow seed's input.
type User struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// <seed>
type SubscriptionService struct{}

func (SubscriptionService) Add(ctx restate.Context, req SubscriptionRequest) error {
	paymentId := restate.UUID(ctx).String()

	payRef, err := restate.Run(ctx, func(ctx restate.RunContext) (string, error) {
		return createRecurringPayment(req.CreditCard, paymentId)
	})
	if err != nil {
		return err
	}

	for _, subscription := range req.Subscriptions {
		_, err := restate.Run(ctx, func(ctx restate.RunContext) (string, error) {
			return createSubscription(req.UserId, subscription, payRef)
		})
		if err != nil {
			return err
		}
	}

	return nil
}

type ShoppingCartObject struct{}

func (ShoppingCartObject) AddItem(ctx restate.ObjectContext, item Item) ([]Item, error) {
	items, err := restate.Get[[]Item](ctx, "items")
	if err != nil {
		return nil, err
	}
	items = append(items, item)
	restate.Set(ctx, "items", items)
	return items, nil
}

func (ShoppingCartObject) GetTotal(ctx restate.ObjectSharedContext) (float64, error) {
	items, err := restate.Get[[]Item](ctx, "items")
	if err != nil {
		return 0, err
	}
	total := 0.0
	for _, item := range items {
		total += item.Price * float64(item.Quantity)
	}
	return total, nil
}

type SignupWorkflow struct{}

func (SignupWorkflow) Run(ctx restate.WorkflowContext, user User) (bool, error) {
	// workflow ID = user ID; workflow runs once per user
	userId := restate.Key(ctx)

	_, err := restate.Run(ctx, func(ctx restate.RunContext) (restate.Void, error) {
		return createUserEntry(userId, user)
	})
	if err != nil {
		return false, err
	}

	secret := restate.UUID(ctx).String()
	_, err = restate.Run(ctx, func(ctx restate.RunContext) (restate.Void, error) {
		return sendVerificationEmail(user, secret)
	})
	if err != nil {
		return false, err
	}

	clickSecret, err := restate.Promise[string](ctx, "email-link-clicked").Result()
	if err != nil {
		return false, err
	}

	return clickSecret == secret, nil
}

func (SignupWorkflow) Click(ctx restate.WorkflowSharedContext, secret string) error {
	return restate.Promise[string](ctx, "email-link-clicked").Resolve(secret)
}

// </seed>
