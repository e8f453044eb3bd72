package config

import (
	"strings"
	"testing"
)

// TestDeflateConfig: permessage_deflate in defaults and routes, merged key
// by key; bad values and unknown keys are errors at their line.
func TestDeflateConfig(t *testing.T) {
	t.Parallel()
	const base = "routes:\n  - name: r\n    upstreams: [ws://127.0.0.1:1]\n"
	for _, tc := range []struct {
		name, yaml string
		want       Deflate // of route r
		err, warn  string
	}{
		{name: "built-in default", yaml: base, want: Deflate{Enabled: true}},
		{name: "defaults off", yaml: "defaults:\n  permessage_deflate: {enabled: false}\n" + base, want: Deflate{}},
		{name: "route merges key by key",
			yaml: "defaults:\n  permessage_deflate: {enabled: false}\n" + base + "    permessage_deflate: {context_takeover: true}\n",
			want: Deflate{Enabled: false, ContextTakeover: true}, warn: "context_takeover has no effect"},
		{name: "route turns it back on", yaml: "defaults:\n  permessage_deflate: {enabled: false}\n" + base +
			"    permessage_deflate:\n      enabled: true\n      context_takeover: true\n",
			want: Deflate{Enabled: true, ContextTakeover: true}},
		{name: "not a bool", yaml: base + "    permessage_deflate: {enabled: yes please}\n",
			err: ":4: routes[0].permessage_deflate.enabled: want true or false"},
		{name: "unknown key", yaml: "defaults:\n  permessage_deflate: {server_max_window_bits: 10}\n" + base,
			err: ":2: defaults.permessage_deflate.server_max_window_bits: unknown key"},
		{name: "takeover without enabled", yaml: base + "    permessage_deflate: {enabled: false, context_takeover: true}\n",
			want: Deflate{ContextTakeover: true}, warn: "context_takeover has no effect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("x.yaml", []byte(tc.yaml))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Routes[0].Settings.PermessageDeflate; got != tc.want {
				t.Errorf("permessage_deflate = %+v, want %+v", got, tc.want)
			}
			w := strings.Join(cfg.Warnings, "\n")
			if (tc.warn == "") != (w == "") || !strings.Contains(w, tc.warn) {
				t.Errorf("warnings = %q, want %q", w, tc.warn)
			}
		})
	}
}
