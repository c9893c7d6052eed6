package chattemplate

import (
	"testing"
	"time"
)

func TestStrftime(t *testing.T) {
	at := time.Date(2024, time.March, 5, 7, 8, 9, 0, time.FixedZone("CET", 3600))
	tests := map[string]string{
		"%Y %y %m %d %e %j": "2024 24 03 05  5 065",
		"%H %I %M %S %p":    "07 07 08 09 AM",
		"%b %h %B %a %A":    "Mar Mar March Tue Tuesday",
		"%Z %z":             "CET +0100",
		"%F %T":             "2024-03-05 07:08:09",
		"100%% %q %":        "100% %q %",
		"%d %b %Y":          "05 Mar 2024",
		"no directives":     "no directives",
	}
	for format, want := range tests {
		if got := strftime(at, format); got != want {
			t.Errorf("strftime(%q) = %q, want %q", format, got, want)
		}
	}
	if got := strftime(at.Add(13*time.Hour), "%I %p"); got != "08 PM" {
		t.Errorf("strftime(%%I %%p) at 20:08 = %q, want \"08 PM\"", got)
	}
}
