package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func tokenUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: trine token --secret-file FILE [flags]

Prints an HS256 JSON Web Token signed with the secret in FILE, for
development against --stream-jwt-hmac-secret-file. Production tokens come
from your identity provider.

Flags:
  --secret-file FILE   the HMAC secret (at least 32 bytes)
  --sub SUBJECT        the sub claim
  --streams PATTERNS   comma-separated stream/group patterns the token may
                       join (* matches anything); omitted: any group
  --ttl DURATION       lifetime (default 1h)
  --aud AUDIENCE, --iss ISSUER
  --claims JSON        more claims, as a JSON object
`)
}

// runToken is `trine token`.
func runToken(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("trine token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	secretFile := fs.String("secret-file", "", "")
	sub := fs.String("sub", "", "")
	streams := fs.String("streams", "", "")
	ttl := fs.Duration("ttl", time.Hour, "")
	aud := fs.String("aud", "", "")
	iss := fs.String("iss", "", "")
	extra := fs.String("claims", "", "")
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "trine token: "+format+" (see trine token --help)\n", a...)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			tokenUsage(stdout)
			return 0
		}
		return fail("%v", err)
	}
	switch {
	case fs.NArg() > 0:
		return fail("unexpected argument %q", fs.Arg(0))
	case *secretFile == "":
		return fail("--secret-file is required")
	case *ttl <= 0:
		return fail("--ttl must be positive")
	}
	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		fmt.Fprintf(stderr, "trine token: %v\n", err)
		return 1
	}
	secret = bytes.TrimSpace(secret)
	if len(secret) < 32 {
		return fail("the secret in %s is %d bytes; use at least 32", *secretFile, len(secret))
	}
	claims := jwt.MapClaims{}
	if *extra != "" {
		if err := json.Unmarshal([]byte(*extra), &claims); err != nil {
			return fail("--claims is not a JSON object: %v", err)
		}
	}
	now := time.Now()
	claims["iat"], claims["exp"] = now.Unix(), now.Add(*ttl).Unix()
	for k, v := range map[string]string{"sub": *sub, "aud": *aud, "iss": *iss} {
		if v != "" {
			claims[k] = v
		}
	}
	if *streams != "" {
		claims["streams"] = splitList(*streams)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		fmt.Fprintf(stderr, "trine token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, s)
	return 0
}
