// Command trine is the one Trine binary.
//
//	trine engine  [flags]                        run the engine
//	trine trigger [flags] FUNCTION_ID [JSON|-]   call a function
//	trine triggers list|release [flags] [ID]     list triggers, release an orphan
//	trine version                                print the version
//
// This package is where flags, environment variables and the YAML file are
// read, and where the engine, its gRPC transport and the HTTP health
// endpoints are wired together and run under one errgroup until SIGINT or
// SIGTERM. Nothing imports it.
//
// Concurrency: the command runs one process. serve (engine or gateway)
// starts every long-lived part under one errgroup bound to the signal
// context, so that the first failure or a signal stops them all, and
// returns once every goroutine it started has exited; nothing in the
// package is called from elsewhere.
//
// The tables of settings and metrics in docs/cli.md are generated from
// the code: the settings from engineSettings and gatewaySettings, the metrics from what a
// real engine and gateway serve on /metrics (reference_test.go).
package main

//go:generate go test -run ^(TestFlagsTable|TestGatewayFlagsTable|TestReference)$ -count=1 . -args -update
