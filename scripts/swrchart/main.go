// Command swrchart draws the SVG chart of the README's Performance section
// from the CSV that BenchmarkStaleWhileRevalidate writes with -swr.csv:
// the slowest Token() call in each 10 ms of a run, for each
// implementation, across the start of a refresh. scripts/bench.sh runs it.
package main

import (
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() {
	in := flag.String("in", "bench/swr.csv", "CSV written by BenchmarkStaleWhileRevalidate")
	out := flag.String("out", "docs/swr.svg", "SVG file to write")
	flag.Parse()
	series, err := read(*in)
	if err != nil {
		log.Fatal(err)
	}
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	if err := draw(f, series); err != nil {
		log.Fatal(err)
	}
}

type point struct {
	ms float64 // time into the run, start of a 10 ms bucket
	us float64 // slowest call in that bucket, microseconds
}

// read returns the points of each implementation.
func read(path string) (map[string][]point, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, err
	}
	series := map[string][]point{}
	for _, row := range rows[1:] { // the header: impl,ms,max_latency_us
		ms, err1 := strconv.ParseFloat(row[1], 64)
		us, err2 := strconv.ParseFloat(row[2], 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad row %q", row)
		}
		series[row[0]] = append(series[row[0]], point{ms, max(us, 0.1)}) // the axis starts at 0.1 µs
	}
	return series, nil
}

// draw writes the chart: time on x (0 to 1.5 s), latency on a log y axis
// (0.1 µs to 1 s).
func draw(w io.Writer, series map[string][]point) error {
	const (
		width, height = 760.0, 360.0
		left, right   = 70.0, 20.0
		top, bottom   = 40.0, 50.0
		xMax          = 1500.0
		yMin, yMax    = -1.0, 6.0 // log10 of microseconds
	)
	x := func(ms float64) float64 { return left + ms/xMax*(width-left-right) }
	y := func(us float64) float64 {
		return top + (yMax-math.Log10(us))/(yMax-yMin)*(height-top-bottom)
	}
	colors := map[string]string{"refreshtoken": "#1b7f3b", "x-oauth2": "#c0392b"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%g" y="20" font-size="14">Slowest Token() call per 10 ms: 8 goroutines, refresh starts at 0.5 s, endpoint takes 50 ms</text>`+"\n", left)
	labels := map[float64]string{-1: "0.1 µs", 0: "1 µs", 1: "10 µs", 2: "100 µs", 3: "1 ms", 4: "10 ms", 5: "100 ms", 6: "1 s"}
	for e := yMin; e <= yMax; e++ {
		fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#ddd"/>`+"\n", left, width-right, y(math.Pow(10, e)), y(math.Pow(10, e)))
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="end">%s</text>`+"\n", left-6, y(math.Pow(10, e))+4, labels[e])
	}
	for ms := 0.0; ms <= xMax; ms += 250 {
		fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">%g s</text>`+"\n", x(ms), height-bottom+18, ms/1000)
	}
	fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%g" y2="%g" stroke="#888" stroke-dasharray="4 3"/>`+"\n", x(500), x(500), top, height-bottom)
	names := make([]string, 0, len(series))
	for name := range series {
		names = append(names, name)
	}
	sort.Strings(names)
	for i, name := range names {
		pts := series[name]
		sort.Slice(pts, func(i, j int) bool { return pts[i].ms < pts[j].ms })
		var path strings.Builder
		for _, p := range pts {
			fmt.Fprintf(&path, "%.1f,%.1f ", x(p.ms), y(p.us))
		}
		color := colors[name]
		if color == "" {
			color = "#555"
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", color, path.String())
		fmt.Fprintf(&b, `<rect x="%g" y="%g" width="12" height="3" fill="%s"/><text x="%g" y="%g">%s</text>`+"\n",
			width-right-190, top+10+float64(i)*16, color, width-right-172, top+14+float64(i)*16, name)
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" text-anchor="middle">time into the run</text>`+"\n", (left+width-right)/2, height-10)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
