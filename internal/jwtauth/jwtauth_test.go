package jwtauth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"go.uber.org/goleak"

	"github.com/trinehq/trine/internal/jwtauth"
	"github.com/trinehq/trine/internal/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const secret = "0123456789abcdef0123456789abcdef"

func write(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sign(t *testing.T, m jwt.SigningMethod, key any, c jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(extra ...any) jwt.MapClaims {
	c := jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}
	for i := 0; i+1 < len(extra); i += 2 {
		c[extra[i].(string)] = extra[i+1]
	}
	return c
}

// Every way a token can be wrong is refused; a right one gives its
// claims, subject, expiry and streams.
func TestHMAC(t *testing.T) {
	v, err := jwtauth.New(jwtauth.Config{HMACSecretFile: write(t, "secret", []byte(secret+"\n")), Audience: "app", Issuer: "me", Leeway: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	key := []byte(secret)
	good := claims("aud", "app", "iss", "me", "streams", []string{"chat/*"}, "role", "admin")
	tok, err := v.Verify(sign(t, jwt.SigningMethodHS256, key, good, ""))
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(tok.Claims, &back); err != nil || back["role"] != "admin" || tok.Subject != "alice" || len(tok.Streams) != 1 || time.Until(tok.Expires) < 50*time.Minute {
		t.Fatalf("token %+v (%v)", tok, back)
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, raw := range map[string]string{
		"expired":        sign(t, jwt.SigningMethodHS256, key, claims("aud", "app", "iss", "me", "exp", time.Now().Add(-time.Minute).Unix()), ""),
		"no exp":         sign(t, jwt.SigningMethodHS256, key, jwt.MapClaims{"sub": "a", "aud": "app", "iss": "me"}, ""),
		"not yet":        sign(t, jwt.SigningMethodHS256, key, claims("aud", "app", "iss", "me", "nbf", time.Now().Add(time.Hour).Unix()), ""),
		"other audience": sign(t, jwt.SigningMethodHS256, key, claims("aud", "other", "iss", "me"), ""),
		"other issuer":   sign(t, jwt.SigningMethodHS256, key, claims("aud", "app", "iss", "them"), ""),
		"other secret":   sign(t, jwt.SigningMethodHS256, []byte("another secret, also 32 bytes long!"), good, ""),
		"RS256":          sign(t, jwt.SigningMethodRS256, rsaKey, good, ""),
		"none":           sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good, ""),
		"garbage":        "a.b.c",
		"empty":          "",
	} {
		if _, err := v.Verify(raw); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := jwtauth.New(jwtauth.Config{HMACSecretFile: write(t, "short", []byte("short"))}); err == nil {
		t.Fatal("a 5-byte secret was accepted")
	}
}

// A public key accepts only its own algorithms: an HS256 token signed with
// the public key's bytes (the classic confusion) is refused.
func TestPublicKey(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	v, err := jwtauth.New(jwtauth.Config{PublicKeyFile: write(t, "pub.pem", pemBytes)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Verify(sign(t, jwt.SigningMethodES256, ecKey, claims(), "")); err != nil {
		t.Fatalf("ES256: %v", err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, pemBytes, claims(), "")); err == nil {
		t.Fatal("an HS256 token keyed with the public key was accepted")
	}
}

// A JWKS is fetched at start and again when a token names a key it lacks
// (a rotation); until the first fetch succeeds, tokens are refused.
func TestJWKSRotation(t *testing.T) {
	k1, _ := rsa.GenerateKey(rand.Reader, 2048)
	k2, _ := rsa.GenerateKey(rand.Reader, 2048)
	var keys atomic.Value
	keys.Store([]*rsa.PrivateKey{k1})
	var fetches atomic.Int32
	var down, huge atomic.Bool
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if huge.Load() { // a key server gone wrong: a valid set without k2, padded to 2 MiB
			_, _ = w.Write([]byte(`{"keys":[]}` + strings.Repeat(" ", 2<<20)))
			return
		}
		set := jwk.NewSet()
		for i, k := range keys.Load().([]*rsa.PrivateKey) {
			pk, err := jwk.Import(&k.PublicKey)
			if err != nil {
				t.Error(err)
			}
			_ = pk.Set(jwk.KeyIDKey, []string{"k1", "k2"}[i])
			_ = pk.Set(jwk.AlgorithmKey, "RS256")
			_ = set.AddKey(pk)
		}
		_ = json.NewEncoder(w).Encode(set)
	}))
	defer srv.Close()
	v, err := jwtauth.New(jwtauth.Config{JWKSURL: srv.URL, Refetch: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	t1 := sign(t, jwt.SigningMethodRS256, k1, claims(), "k1")
	if _, err := v.Verify(t1); err == nil {
		t.Fatal("a token was accepted before the JWKS was fetched")
	}
	down.Store(false)
	poll.CheckFor(t, 10*time.Second, poll.Holds("the JWKS fetched in the background", func() bool { _, err := v.Verify(t1); return err == nil }))
	keys.Store([]*rsa.PrivateKey{k1, k2})
	t2 := sign(t, jwt.SigningMethodRS256, k2, claims(), "k2")
	poll.CheckFor(t, 10*time.Second, poll.Holds("the rotated key", func() bool { _, err := v.Verify(t2); return err == nil }))
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, k2, claims(), "k9")); err == nil {
		t.Fatal("a token with an unknown key id was accepted")
	}
	// An oversize JWKS is refused and the keys in hand stay.
	huge.Store(true)
	n := fetches.Load()
	_, _ = v.Verify(sign(t, jwt.SigningMethodRS256, k2, claims(), "k8")) // an unknown kid asks for a fetch
	poll.CheckFor(t, 10*time.Second, poll.Holds("the fetch of the oversize JWKS", func() bool { return fetches.Load() > n }))
	time.Sleep(100 * time.Millisecond)
	if _, err := v.Verify(t2); err != nil {
		t.Fatalf("after an oversize JWKS the keys in hand were dropped: %v", err)
	}
}

func TestAllows(t *testing.T) {
	tok := jwtauth.Token{Streams: []string{"chat/*", "todos/alice", "feed"}}
	for _, c := range []struct {
		stream, group string
		want          bool
	}{
		{"chat", "room1", true}, {"chat", "a/b", true}, {"chatx", "r", false}, {"todos", "alice", true},
		{"todos", "bob", false}, {"feed", "anything", true}, {"c", "hat/x", false},
	} {
		if got := tok.Allows(c.stream, c.group); got != c.want {
			t.Errorf("Allows(%q, %q) = %v", c.stream, c.group, got)
		}
	}
	if !(jwtauth.Token{}).Allows("x", "y") {
		t.Error("a token without streams must allow any group")
	}
	if (jwtauth.Token{Streams: []string{}}).Allows("x", "y") {
		t.Error("an empty streams claim must allow nothing")
	}
}
