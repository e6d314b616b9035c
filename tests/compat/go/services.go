package main

// The test services every implementation serves (tests/services/official_python.py is the
// reference), with explicit service and handler names.

import (
	"errors"
	"fmt"
	"time"

	restate "github.com/restatedev/sdk-go"
)

func greeterService() restate.ServiceDefinition {
	return restate.NewService("Greeter").
		Handler("greet", restate.NewServiceHandler(func(ctx restate.Context, name string) (string, error) {
			return "Hello " + name + "!", nil
		}))
}

func counterObject() restate.ServiceDefinition {
	return restate.NewObject("Counter").
		Handler("add", restate.NewObjectHandler(counterAdd)).
		Handler("get", restate.NewObjectSharedHandler(func(ctx restate.ObjectSharedContext, _ restate.Void) (int64, error) {
			return restate.Get[int64](ctx, "count")
		})).
		Handler("reset", restate.NewObjectHandler(func(ctx restate.ObjectContext, _ restate.Void) (restate.Void, error) {
			restate.ClearAll(ctx)
			return restate.Void{}, nil
		}))
}

func counterAdd(ctx restate.ObjectContext, delta int64) (int64, error) {
	count, err := restate.Get[int64](ctx, "count")
	if err != nil {
		return 0, err
	}
	count += delta
	restate.Set(ctx, "count", count)
	return count, nil
}

func stepsService() restate.ServiceDefinition {
	return restate.NewService("Steps").
		Handler("run_steps", restate.NewServiceHandler(runSteps)).
		Handler("sleep_then", restate.NewServiceHandler(func(ctx restate.Context, millis int64) (string, error) {
			if err := restate.Sleep(ctx, time.Duration(millis)*time.Millisecond); err != nil {
				return "", err
			}
			return "slept", nil
		})).
		Handler("fail_terminal", restate.NewServiceHandler(func(ctx restate.Context, message string) (string, error) {
			return "", restate.ToTerminalError(errors.New(message), restate.WithErrorCode(418))
		})).
		Handler("flaky", restate.NewServiceHandler(flaky)).
		Handler("wait_awakeable", restate.NewServiceHandler(waitAwakeable)).
		Handler("call_counter", restate.NewServiceHandler(func(ctx restate.Context, key string) (int64, error) {
			return restate.Object[int64](ctx, "Counter", key, "add").Request(1)
		})).
		Handler("send_in_order", restate.NewServiceHandler(func(ctx restate.Context, key string) (restate.Void, error) {
			for i := 0; i < 5; i++ {
				restate.ObjectSend(ctx, "Recorder", key, "append").Send(i)
			}
			return restate.Void{}, nil
		})).
		Handler("delayed_send", restate.NewServiceHandler(func(ctx restate.Context, key string) (restate.Void, error) {
			restate.ObjectSend(ctx, "Recorder", key, "append").Send(99, restate.WithDelay(500*time.Millisecond))
			return restate.Void{}, nil
		}))
}

func runSteps(ctx restate.Context, n int) (int, error) {
	invocationID := ctx.Request().ID
	recordSideEffect("attempt " + invocationID) // not journaled: one line per attempt
	total := 0
	for i := 0; i < n; i++ {
		step, err := restate.Run(ctx, func(restate.RunContext) (int, error) {
			recordSideEffect(fmt.Sprintf("step %s %d", invocationID, i))
			return i, nil
		}, restate.WithName(fmt.Sprintf("step-%d", i)))
		if err != nil {
			return 0, err
		}
		total += step
	}
	return total, nil
}

// flaky fails (retryably) the first two times for name, then succeeds.
func flaky(ctx restate.Context, name string) (string, error) {
	return restate.Run(ctx, func(restate.RunContext) (string, error) {
		seen := countSideEffects("flaky " + name)
		recordSideEffect("flaky " + name)
		if seen < 2 {
			return "", fmt.Errorf("flaky failure %d", seen+1)
		}
		return fmt.Sprintf("ok after %d", seen+1), nil
	}, restate.WithName("flaky"))
}

func waitAwakeable(ctx restate.Context, name string) (string, error) {
	awakeable := restate.Awakeable[string](ctx)
	awakeableID := awakeable.Id()
	if err := restate.RunVoid(ctx, func(restate.RunContext) error {
		recordSideEffect(fmt.Sprintf("awakeable %s %s", name, awakeableID))
		return nil
	}, restate.WithName("publish")); err != nil {
		return "", err
	}
	return awakeable.Result()
}

func recorderObject() restate.ServiceDefinition {
	return restate.NewObject("Recorder").
		Handler("append", restate.NewObjectHandler(func(ctx restate.ObjectContext, item int) ([]int, error) {
			items, err := restate.Get[[]int](ctx, "items")
			if err != nil {
				return nil, err
			}
			items = append(items, item)
			restate.Set(ctx, "items", items)
			return items, nil
		})).
		Handler("items", restate.NewObjectSharedHandler(func(ctx restate.ObjectSharedContext, _ restate.Void) ([]int, error) {
			items, err := restate.Get[[]int](ctx, "items")
			if items == nil {
				items = []int{} // answer [] rather than null for an empty recorder
			}
			return items, err
		}))
}

func durableObject() restate.ServiceDefinition {
	return restate.NewObject("Durable").
		Handler("step_sleep_step", restate.NewObjectHandler(stepSleepStep)).
		Handler("status", restate.NewObjectSharedHandler(func(ctx restate.ObjectSharedContext, _ restate.Void) (string, error) {
			return stringStateOr(ctx, "status", "none")
		}))
}

// stepSleepStep runs a journaled side effect, sets state, sleeps durably, then answers.
func stepSleepStep(ctx restate.ObjectContext, millis int64) (string, error) {
	key := restate.Key(ctx)
	charged, err := restate.Run(ctx, func(restate.RunContext) (string, error) {
		recordSideEffect("charge " + key)
		return "charged", nil
	}, restate.WithName("charge"))
	if err != nil {
		return "", err
	}
	restate.Set(ctx, "status", charged)
	if err := restate.Sleep(ctx, time.Duration(millis)*time.Millisecond); err != nil {
		return "", err
	}
	return charged + " then slept", nil
}

func signupWorkflow() restate.ServiceDefinition {
	return restate.NewWorkflow("Signup").
		Handler("run", restate.NewWorkflowHandler(signupRun)).
		Handler("click", restate.NewWorkflowSharedHandler(func(ctx restate.WorkflowSharedContext, secret string) (restate.Void, error) {
			return restate.Void{}, restate.Promise[string](ctx, "clicked").Resolve(secret)
		})).
		Handler("stage", restate.NewWorkflowSharedHandler(func(ctx restate.WorkflowSharedContext, _ restate.Void) (string, error) {
			return stringStateOr(ctx, "stage", "new")
		}))
}

func signupRun(ctx restate.WorkflowContext, email string) (string, error) {
	key := restate.Key(ctx)
	if err := restate.RunVoid(ctx, func(restate.RunContext) error {
		recordSideEffect("signup-create " + key)
		return nil
	}, restate.WithName("create")); err != nil {
		return "", err
	}
	restate.Set(ctx, "stage", "waiting")
	clicked, err := restate.Promise[string](ctx, "clicked").Result()
	if err != nil {
		return "", err
	}
	restate.Set(ctx, "stage", "done")
	return email + " verified with " + clicked, nil
}

// stringStateOr reads a string state entry, answering fallback when the entry is absent.
func stringStateOr(ctx restate.ObjectSharedContext, key string, fallback string) (string, error) {
	value, err := restate.Get[*string](ctx, key)
	if err != nil || value == nil {
		return fallback, err
	}
	return *value, nil
}
