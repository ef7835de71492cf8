package policies

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "365d", want: 365 * day},
		{in: " 7d ", want: 7 * day},
		{in: "8760h", want: 365 * day},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "0d", want: 0},
		{in: "", wantErr: true},
		{in: "2y", wantErr: true},
		{in: "365", wantErr: true},
		{in: "1.5d", wantErr: true},
		{in: "d", wantErr: true},
		{in: "+1d", wantErr: true},
		{in: "-1d", wantErr: true},
		{in: "-1h", wantErr: true},
		{in: "1d-1h", wantErr: true},
		{in: "1dd", wantErr: true},
		{in: "106751d", want: 106751 * day},
		{in: "106752d", wantErr: true},
		{in: "106751d24h", wantErr: true},
		{in: "99999999999999999999d", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseDuration(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && time.Duration(got) != tt.want {
			t.Errorf("ParseDuration(%q) = %v, want %v", tt.in, time.Duration(got), tt.want)
		}
	}
}

func TestDurationStringRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{365 * 24 * time.Hour, 36 * time.Hour, 90 * time.Minute, time.Second} {
		s := Duration(d).String()
		back, err := ParseDuration(s)
		if err != nil || time.Duration(back) != d {
			t.Errorf("%v -> %q -> %v, %v", d, s, time.Duration(back), err)
		}
	}
	if got := Duration(398 * 24 * time.Hour).String(); got != "398d" {
		t.Errorf("String() = %q, want 398d", got)
	}
}
