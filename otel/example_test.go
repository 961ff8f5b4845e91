package refreshtokenotel_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprometheus "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"golang.org/x/oauth2"

	"github.com/tokenfresh/refreshtoken"
	refreshtokenotel "github.com/tokenfresh/refreshtoken/otel"
	"github.com/tokenfresh/refreshtoken/refreshtokentest"
)

// A source's metrics exported to Prometheus through the OpenTelemetry
// Prometheus exporter, served at /metrics. The token server is a local
// one; a program would serve /metrics with its own mux.
func Example_prometheus() {
	srv := refreshtokentest.NewServer(refreshtokentest.Config{})
	defer srv.Close()
	conf := srv.Config()

	// A registry of the program's own; prometheus.DefaultRegisterer,
	// the exporter's default, does as well.
	registry := prometheus.NewRegistry()
	exporter, err := otelprometheus.New(otelprometheus.WithRegisterer(registry), otelprometheus.WithoutScopeInfo())
	if err != nil {
		log.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(context.Background())
	obs, err := refreshtokenotel.New(refreshtokenotel.WithMeterProvider(mp),
		refreshtokenotel.WithTokenURL(conf.Endpoint.TokenURL))
	if err != nil {
		log.Fatal(err)
	}
	ts := refreshtoken.New(context.Background(), conf, &oauth2.Token{RefreshToken: srv.NewRefreshToken("")},
		refreshtoken.WithObserver(obs))
	defer ts.Close()
	if _, err := ts.Token(); err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	metrics := httptest.NewServer(mux)
	defer metrics.Close()
	resp, err := http.Get(metrics.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "refreshtoken_refreshes_total") {
			fmt.Println(lines.Text())
		}
	}
	// Output:
	// refreshtoken_refreshes_total{http_response_status_code="200",refreshtoken_outcome="ok",refreshtoken_reason="no_token"} 1
}
