// Command compat serves the compatibility matrix's test services and the seed examples on the
// official Restate Go SDK.
//
// Usage: compat -port PORT [-request-response]
//
// By default it serves with the SDK's own Start (h2c only, bidirectional streaming). With
// -request-response it advertises REQUEST_RESPONSE and serves the SDK's handler on a plain
// net/http HTTP/1.1 server, since Start accepts no HTTP/1.1 connections.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	restate "github.com/restatedev/sdk-go"
	"github.com/restatedev/sdk-go/server"
)

// readHeaderTimeout bounds how long the HTTP/1.1 server waits for a request's headers.
const readHeaderTimeout = 5 * time.Second

func main() {
	port := flag.Int("port", 0, "port to listen on (default: env PORT, else 9080)")
	requestResponse := flag.Bool("request-response", false, "serve HTTP/1.1 and advertise REQUEST_RESPONSE instead of h2c BIDI_STREAM")
	flag.Parse()
	address := fmt.Sprintf(":%d", listenPort(*port))

	endpoint := server.NewRestate().
		Bidirectional(!*requestResponse).
		Bind(greeterService()).
		Bind(counterObject()).
		Bind(stepsService()).
		Bind(recorderObject()).
		Bind(durableObject()).
		Bind(signupWorkflow()).
		Bind(restate.Reflect(SubscriptionService{})).
		Bind(restate.Reflect(ShoppingCartObject{})).
		Bind(restate.Reflect(SignupWorkflow{}))
	if *requestResponse {
		log.Fatal(serveHTTP11(endpoint, address))
	}
	if err := endpoint.Start(context.Background(), address); err != nil {
		log.Fatal(err)
	}
}

// serveHTTP11 serves the endpoint's handler over plain HTTP/1.1 until the server fails.
func serveHTTP11(endpoint *server.Restate, address string) error {
	handler, err := endpoint.Handler()
	if err != nil {
		return err
	}
	httpServer := &http.Server{Addr: address, Handler: handler, ReadHeaderTimeout: readHeaderTimeout}
	log.Printf("serving HTTP/1.1 (request/response) on %s", address)
	return httpServer.ListenAndServe()
}

// listenPort is the -port flag when given, else env PORT, else 9080.
func listenPort(flagPort int) int {
	if flagPort != 0 {
		return flagPort
	}
	var port int
	if _, err := fmt.Sscanf(os.Getenv("PORT"), "%d", &port); err == nil && port > 0 {
		return port
	}
	return 9080
}
