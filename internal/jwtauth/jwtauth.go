// Package jwtauth verifies the JSON Web Tokens browsers bring to the stream
// gateway, so that the common case needs no auth worker: an HMAC secret, a
// public key, or a JWKS URL fetched and refreshed in the background. Tokens
// must carry exp; nbf, aud and iss are checked; the algorithm must be one
// the key is for (no "none", no HMAC with a public key). The claims become
// the connection's context, and an optional "streams" claim limits the
// groups the token may join.
//
// Parsing and validation are golang-jwt/jwt's; JWKS documents are parsed
// by lestrrat-go/jwx.
//
// Concurrency: a Verifier is safe for concurrent use. With a JWKS URL, New
// starts one goroutine that refreshes the keys, and Close stops it and
// waits for it; otherwise the package starts no goroutines.
package jwtauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/trinehq/trine/engine"
)

// Config says where the keys are. Exactly one of HMACSecretFile,
// PublicKeyFile and JWKSURL is set.
type Config struct {
	// HMACSecretFile holds the HS256/384/512 secret (surrounding white
	// space is dropped; at least 32 bytes).
	HMACSecretFile string
	// PublicKeyFile holds a PEM public key (RSA, ECDSA or Ed25519).
	PublicKeyFile string
	// JWKSURL is fetched at start and every Refresh, and again (at most
	// once a minute) when a token names a key id it lacks.
	JWKSURL string
	// Audience and Issuer, if set, must match aud and iss.
	Audience, Issuer string
	// Leeway is the clock skew allowed on exp and nbf. Default 10s.
	Leeway time.Duration
	// Refresh is how often the JWKS is fetched again. Default 15m.
	Refresh time.Duration
	// Refetch is the least time between fetches caused by unknown key
	// ids. Default 1m.
	Refetch time.Duration
	// HTTPClient fetches the JWKS. Default: a client with a 10s timeout.
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Enabled reports whether c turns JWT verification on.
func (c Config) Enabled() bool {
	return c.HMACSecretFile != "" || c.PublicKeyFile != "" || c.JWKSURL != ""
}

// Verifier checks tokens against one key source.
type Verifier struct {
	cfg     Config
	methods []string
	key     any // HMAC secret or public key; nil with a JWKS
	jwks    atomic.Pointer[jwk.Set]
	log     *slog.Logger

	refetch   chan struct{}
	lastFetch atomic.Int64
	stop      context.CancelFunc
	wg        sync.WaitGroup
}

// Token is a verified token.
type Token struct {
	// Claims are the token's claims, as JSON: the connection's context.
	Claims  json.RawMessage
	Subject string
	Expires time.Time
	// Streams are the token's "streams" patterns; nil when it has none
	// (any group).
	Streams []string
}

// New reads the key source. A JWKS that cannot be fetched at start is
// fetched again in the background; until it is, every token is refused.
func New(cfg Config) (*Verifier, error) {
	n := 0
	for _, s := range []string{cfg.HMACSecretFile, cfg.PublicKeyFile, cfg.JWKSURL} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return nil, errors.New("set exactly one of --stream-jwt-hmac-secret-file, --stream-jwt-public-key-file and --stream-jwks-url")
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = 10 * time.Second
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 15 * time.Minute
	}
	if cfg.Refetch <= 0 {
		cfg.Refetch = time.Minute
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	v := &Verifier{cfg: cfg, log: cfg.Logger, refetch: make(chan struct{}, 1)}
	switch {
	case cfg.HMACSecretFile != "":
		b, err := os.ReadFile(cfg.HMACSecretFile)
		if err != nil {
			return nil, fmt.Errorf("JWT secret: %w", err)
		}
		b = bytes.TrimSpace(b)
		if len(b) < 32 {
			return nil, fmt.Errorf("JWT secret %s: %d bytes; use at least 32", cfg.HMACSecretFile, len(b))
		}
		v.key, v.methods = b, []string{"HS256", "HS384", "HS512"}
	case cfg.PublicKeyFile != "":
		b, err := os.ReadFile(cfg.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("JWT public key: %w", err)
		}
		if v.key, v.methods, err = parsePublicKey(b); err != nil {
			return nil, fmt.Errorf("JWT public key %s: %w", cfg.PublicKeyFile, err)
		}
	default:
		v.methods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
		ctx, cancel := context.WithCancel(context.Background())
		v.stop = cancel
		if err := v.fetch(ctx); err != nil {
			v.log.Warn("JWKS not fetched at start; tokens are refused until it is", "url", cfg.JWKSURL, "error", err)
		}
		v.wg.Go(func() { v.refresher(ctx) })
	}
	return v, nil
}

// Close stops the JWKS refresher.
func (v *Verifier) Close() {
	if v.stop != nil {
		v.stop()
		v.wg.Wait()
	}
}

func parsePublicKey(pemBytes []byte) (any, []string, error) {
	if k, err := jwt.ParseRSAPublicKeyFromPEM(pemBytes); err == nil {
		return k, []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, nil
	}
	if k, err := jwt.ParseECPublicKeyFromPEM(pemBytes); err == nil {
		return k, []string{"ES256", "ES384", "ES512"}, nil
	}
	if k, err := jwt.ParseEdPublicKeyFromPEM(pemBytes); err == nil {
		return k, []string{"EdDSA"}, nil
	}
	return nil, nil, errors.New("not a PEM RSA, ECDSA or Ed25519 public key")
}

// maxJWKSBytes bounds a JWKS document: a key server that sends more is
// refused, and the keys in hand stay.
const maxJWKSBytes = 1 << 20

func (v *Verifier) fetch(ctx context.Context) error {
	v.lastFetch.Store(time.Now().UnixNano())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return err
	}
	res, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("JWKS %s: %s", v.cfg.JWKSURL, res.Status)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, maxJWKSBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxJWKSBytes {
		return fmt.Errorf("JWKS %s: larger than %d bytes", v.cfg.JWKSURL, maxJWKSBytes)
	}
	set, err := jwk.Parse(b)
	if err != nil {
		return fmt.Errorf("JWKS %s: %w", v.cfg.JWKSURL, err)
	}
	v.jwks.Store(&set)
	return nil
}

// refresher fetches the JWKS every Refresh, and on demand (a key id it
// lacks, at most once every Refetch; every 5s while it has none).
func (v *Verifier) refresher(ctx context.Context) {
	t := time.NewTicker(v.cfg.Refresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-v.refetch:
		case <-time.After(5 * time.Second):
			if v.jwks.Load() != nil {
				continue
			}
		}
		if err := v.fetch(ctx); err != nil && ctx.Err() == nil {
			v.log.Warn("JWKS fetch failed; keeping the keys in hand", "url", v.cfg.JWKSURL, "error", err)
		}
	}
}

// keyFor finds the key of a token.
func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	if v.key != nil {
		return v.key, nil
	}
	setp := v.jwks.Load()
	if setp == nil {
		return nil, errors.New("the JWKS has not been fetched yet")
	}
	kid, _ := t.Header["kid"].(string)
	var k jwk.Key
	var ok bool
	if kid != "" {
		k, ok = (*setp).LookupKeyID(kid)
	} else if (*setp).Len() == 1 {
		k, ok = (*setp).Key(0)
	}
	if !ok {
		if time.Since(time.Unix(0, v.lastFetch.Load())) >= v.cfg.Refetch {
			select {
			case v.refetch <- struct{}{}:
			default:
			}
		}
		return nil, fmt.Errorf("no key %q in the JWKS", kid)
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return nil, err
	}
	switch pk := raw.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return pk, nil
	case crypto.Signer: // a private key in the set: verify with its public half
		return pk.Public(), nil
	}
	return nil, fmt.Errorf("key %q is not a public key", kid)
}

// claims are the registered claims and the streams claim; the rest is
// kept as JSON.
type claims struct {
	jwt.RegisteredClaims
	Streams *[]string `json:"streams,omitempty"`
}

// Verify checks a token and returns it.
func (v *Verifier) Verify(raw string) (Token, error) {
	opts := []jwt.ParserOption{jwt.WithValidMethods(v.methods), jwt.WithExpirationRequired(), jwt.WithLeeway(v.cfg.Leeway)}
	if v.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience))
	}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	var c claims
	tok, err := jwt.ParseWithClaims(raw, &c, v.keyFor, opts...)
	if err != nil {
		return Token{}, err
	}
	if !tok.Valid {
		return Token{}, errors.New("token is not valid")
	}
	// The whole payload is the context, custom claims included.
	parts := strings.Split(raw, ".")
	payload, err := jwt.NewParser().DecodeSegment(parts[1])
	if err != nil {
		return Token{}, err
	}
	out := Token{Claims: payload, Subject: c.Subject, Expires: c.ExpiresAt.Time}
	if c.Streams != nil {
		out.Streams = *c.Streams
		if out.Streams == nil {
			out.Streams = []string{}
		}
	}
	return out, nil
}

// AllowsStream reports whether the token may join some group of stream:
// whether a pattern's stream part matches it.
func (t Token) AllowsStream(stream string) bool {
	if t.Streams == nil {
		return true
	}
	for _, p := range t.Streams {
		sp, _, _ := strings.Cut(p, "/")
		if engine.MatchPattern(sp, stream) {
			return true
		}
	}
	return false
}

// Allows reports whether the token may join group of stream. A pattern is
// "stream/group": the part before the first "/" matches the stream name,
// the rest the group id, each with * matching any characters.
func (t Token) Allows(stream, group string) bool {
	if t.Streams == nil {
		return true
	}
	for _, p := range t.Streams {
		sp, gp, ok := strings.Cut(p, "/")
		if !ok {
			gp = "*"
		}
		if engine.MatchPattern(sp, stream) && engine.MatchPattern(gp, group) {
			return true
		}
	}
	return false
}
