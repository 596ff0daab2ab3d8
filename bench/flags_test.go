package main

import (
	"slices"
	"testing"
	"time"
)

func TestSplicePaths(t *testing.T) {
	one := []gatewaySpec{{pathGateway, "/bin/gw"}}
	two := []gatewaySpec{{"before", "/a"}, {"after", "/b"}}
	for name, tc := range map[string]struct {
		splice  string
		bins    []gatewaySpec
		want    []string
		wantErr bool
	}{
		"should name rows by variant for one binary":      {"opaque,streams,streams-early", one, []string{"opaque", "streams", "streams-early"}, false},
		"should prefix the binary's name for several":     {"opaque,streams", two, []string{"before.opaque", "before.streams", "after.opaque", "after.streams"}, false},
		"should keep the binary's name for default":       {"default", one, []string{"gateway"}, false},
		"should reject an unknown variant":                {"opaque,fast", one, nil, true},
		"should reject a variant named twice":             {"streams,streams", one, nil, true},
		"should reject a binary named like a variant row": {"opaque,default", []gatewaySpec{{"opaque", "/x"}}, nil, true},
	} {
		t.Run(name, func(t *testing.T) {
			v, err := parseSplice(tc.splice)
			if err == nil {
				err = checkPathNames(config{gateways: tc.bins, splice: v})
			}
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error: %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			var got []string
			for _, b := range tc.bins {
				for _, s := range v {
					got = append(got, gatewayPath(b, s, len(tc.bins) > 1))
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("paths %q, want %q", got, tc.want)
			}
		})
	}
}

func TestOpaqueOf(t *testing.T) {
	r := &results{Gateways: []gatewayInfo{
		{Name: "before.opaque", Bin: "before", Variant: variantOpaque},
		{Name: "before.streams", Bin: "before", Variant: "streams"},
		{Name: "after.opaque", Bin: "after", Variant: variantOpaque},
		{Name: "after.streams-early", Bin: "after", Variant: "streams-early"},
		{Name: pathRelay},
	}}
	for name, want := range map[string]string{
		"before.streams": "before.opaque", "after.streams-early": "after.opaque",
		"after.opaque": "after.opaque", pathRelay: "before.opaque", pathDirect: "",
	} {
		if got := r.opaqueOf(name); got != want {
			t.Errorf("opaqueOf(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50 * time.Millisecond, 0.9: 90 * time.Millisecond, 0.99: 99 * time.Millisecond, 1: 100 * time.Millisecond} {
		if got := percentile(ds, q); got != want {
			t.Errorf("percentile(%v) = %s, want %s", q, got, want)
		}
	}
	if got := percentile(nil, 0.5); got >= 0 {
		t.Errorf("percentile of nothing = %s, want negative", got)
	}
}
