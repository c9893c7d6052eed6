package chattemplate

import (
	"strconv"
	"strings"
	"time"
)

// strftimeLayouts maps strftime directives to the Go layouts that print
// them identically in the C locale.
var strftimeLayouts = map[byte]string{
	'y': "06", 'm': "01", 'd': "02", 'e': "_2", 'j': "002",
	'H': "15", 'I': "03", 'M': "04", 'S': "05", 'p': "PM",
	'b': "Jan", 'h': "Jan", 'B': "January", 'a': "Mon", 'A': "Monday",
	'Z': "MST", 'z': "-0700", 'F': "2006-01-02", 'T': "15:04:05",
}

// strftime formats t like C's strftime in the C locale, for the directives
// chat templates use (Llama 3.x: "%d %b %Y"). Unknown directives are kept
// verbatim, as glibc does.
func strftime(t time.Time, format string) string {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			b.WriteByte(format[i])
			continue
		}
		i++
		switch d := format[i]; {
		case d == 'Y': // unpadded, unlike Go's 2006
			b.WriteString(strconv.Itoa(t.Year()))
		case d == '%':
			b.WriteByte('%')
		case strftimeLayouts[d] != "":
			b.WriteString(t.Format(strftimeLayouts[d]))
		default:
			b.WriteByte('%')
			b.WriteByte(d)
		}
	}
	return b.String()
}
