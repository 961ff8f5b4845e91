package interop

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/storage"
	"golang.org/x/oauth2"
)

// TestFosite runs the scenarios against ory/fosite, the library Ory Hydra
// is built on, served in process: the authorization code flow, the refresh
// grant with rotation (each refresh revokes the refresh token sent and the
// access token issued with it; a reused refresh token revokes the family,
// which fosite does whatever its configuration), introspection and
// revocation.
func TestFosite(t *testing.T) {
	const callers = 32
	srv := startFosite(t, 4*time.Second, callers)
	t.Run("RotationUnderLoad", func(t *testing.T) {
		testRotationUnderLoad(t, srv, load{callers: callers, pace: 20 * time.Millisecond, refreshes: 8})
	})
	t.Run("RevocationStops", func(t *testing.T) { testRevocationStops(t, srv, callers) })
	t.Run("ReuseRevokesFamily", func(t *testing.T) { testReuseRevokesFamily(t, srv) })
}

// fositeServer is an authorization server and a protected API on fosite,
// with its in-memory storage and HMAC tokens.
type fositeServer struct {
	p fosite.OAuth2Provider
}

func startFosite(t *testing.T, accessTokenLife time.Duration, callers int) *server {
	secretsHasher := &fosite.BCrypt{}
	config := &fosite.Config{
		AccessTokenLifespan:   accessTokenLife,
		RefreshTokenLifespan:  time.Hour,
		AuthorizeCodeLifespan: time.Minute,
		GlobalSecret:          []byte(rand.Text() + rand.Text())[:32], // HMAC needs 32 bytes
		// bcrypt's minimum cost: every token request checks the secret.
		HashCost: 4,
		// Set here, not left to the getters that set them on first use,
		// which the server's goroutines would race for.
		ClientSecretsHasher:      secretsHasher,
		ScopeStrategy:            fosite.ExactScopeStrategy,
		AudienceMatchingStrategy: fosite.DefaultAudienceMatchingStrategy,
	}
	secretsHasher.Config = config

	clientSecret := rand.Text()
	hashed, err := secretsHasher.Hash(context.Background(), []byte(clientSecret))
	if err != nil {
		t.Fatal(err)
	}
	const redirect = "http://127.0.0.1/callback"
	store := storage.NewMemoryStore()
	store.Clients["interop"] = &fosite.DefaultClient{
		ID:            "interop",
		Secret:        hashed,
		RedirectURIs:  []string{redirect},
		ResponseTypes: []string{"code"},
		GrantTypes:    []string{"authorization_code", "refresh_token"},
		Scopes:        []string{"offline", "api"},
	}
	f := &fositeServer{p: compose.Compose(config, store, compose.NewOAuth2HMACStrategy(config),
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
	)}

	log := &grantLog{next: http.HandlerFunc(f.token)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", f.authorize)
	mux.Handle("POST /token", log)
	mux.HandleFunc("POST /introspect", f.introspect)
	mux.HandleFunc("POST /revoke", f.revoke)
	mux.HandleFunc("GET /api", f.api)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)

	conf := &oauth2.Config{
		ClientID:     "interop",
		ClientSecret: clientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:  hs.URL + "/authorize",
			TokenURL: hs.URL + "/token",
			// The secret in the body, refreshtoken's default.
			AuthStyle: oauth2.AuthStyleInParams,
		},
		RedirectURL: redirect,
		Scopes:      []string{"offline", "api"},
	}
	hc := newHTTPClient(callers)
	return &server{
		conf:      conf,
		log:       log,
		hc:        hc,
		authorize: func(t *testing.T) *oauth2.Token { return codeFlow(t, hc, conf, nil) },
		api:       hs.URL + "/api",
		revoke: func(ctx context.Context, rt string) error {
			return revoke(ctx, hc, hs.URL+"/revoke", basicAuth(conf), rt)
		},
		active: func(ctx context.Context, token string) (bool, error) {
			return introspect(ctx, hc, hs.URL+"/introspect", basicAuth(conf), token)
		},
	}
}

// authorize grants every authorization request at once, as a user who is
// logged in and consents to every scope asked for.
func (f *fositeServer) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := f.p.NewAuthorizeRequest(ctx, r)
	if err != nil {
		f.p.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	for _, scope := range ar.GetRequestedScopes() {
		ar.GrantScope(scope)
	}
	resp, err := f.p.NewAuthorizeResponse(ctx, ar, &fosite.DefaultSession{Subject: "interop-user"})
	if err != nil {
		f.p.WriteAuthorizeError(ctx, w, ar, err)
		return
	}
	f.p.WriteAuthorizeResponse(ctx, w, ar, resp)
}

func (f *fositeServer) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := f.p.NewAccessRequest(ctx, r, new(fosite.DefaultSession))
	if err != nil {
		f.p.WriteAccessError(ctx, w, ar, err)
		return
	}
	resp, err := f.p.NewAccessResponse(ctx, ar)
	if err != nil {
		f.p.WriteAccessError(ctx, w, ar, err)
		return
	}
	f.p.WriteAccessResponse(ctx, w, ar, resp)
}

func (f *fositeServer) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ir, err := f.p.NewIntrospectionRequest(ctx, r, new(fosite.DefaultSession))
	if err != nil {
		f.p.WriteIntrospectionError(ctx, w, err)
		return
	}
	f.p.WriteIntrospectionResponse(ctx, w, ir)
}

func (f *fositeServer) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f.p.WriteRevocationResponse(ctx, w, f.p.NewRevocationRequest(ctx, r))
}

// api is the protected API: it introspects the bearer token, which must be
// an active access token (fosite would take a refresh token too).
func (f *fositeServer) api(w http.ResponseWriter, r *http.Request) {
	use, _, err := f.p.IntrospectToken(r.Context(), fosite.AccessTokenFromRequest(r), fosite.AccessToken, new(fosite.DefaultSession))
	if err != nil || use != fosite.AccessToken {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "invalid token", http.StatusUnauthorized)
		return
	}
	w.Write([]byte("ok\n"))
}
