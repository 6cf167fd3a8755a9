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
package main
