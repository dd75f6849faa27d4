package validate

import (
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Bounds every request field is held to before any handler reads it, so
// that no caller can store, echo or make Sluice process unbounded values.
// Handlers apply tighter, field-specific rules on top.
const (
	// MaxStringBytes caps a string or bytes field without its own cap.
	MaxStringBytes = 4 << 10
	// MaxListEntries caps a repeated field; MaxMapEntries a map.
	MaxListEntries = 100
	MaxMapEntries  = 50
)

// longFields are the fields allowed more than MaxStringBytes, by full name.
// A zero cap means the field is bounded by the message size alone.
var longFields = map[protoreflect.FullName]int{
	"sluice.credential.v1.Credential.description":      8 << 10,
	"sluice.destination.v1.Destination.description":    8 << 10,
	"sluice.destination.v1.Destination.pgp_public_key": 64 << 10,
	"sluice.delivery.v1.DeliverRequest.arrow_ipc":      0,
	// Arrow Flight DoPut: IPC metadata and bodies, bounded by the message
	// size and then by the ingest limits; the command is a DeliveryStart.
	"arrow.flight.protocol.FlightData.data_header": 0,
	"arrow.flight.protocol.FlightData.data_body":   0,
	"arrow.flight.protocol.FlightDescriptor.cmd":   64 << 10,
}

// Bounds records a violation for every string or bytes field over its cap,
// every enum value the API does not declare, and every repeated or map
// field with too many entries, anywhere in m. Field paths are as in the
// request (`destination.tags["k"]`, `update_mask.paths[3]`).
func Bounds(v *Violations, m proto.Message) {
	bounds(v, "", m.ProtoReflect())
}

func bounds(v *Violations, prefix string, m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		path := prefix + string(fd.Name())
		switch {
		case fd.IsMap():
			mp := val.Map()
			if mp.Len() > MaxMapEntries {
				v.Add(path, "must have at most %d entries; got %d", MaxMapEntries, mp.Len())
				return true
			}
			mp.Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				entry := path + "[" + strconv.Quote(clip(k.String())) + "]"
				if fd.MapKey().Kind() == protoreflect.StringKind && len(k.String()) > MaxStringBytes {
					v.Add(path, "keys must be at most %d bytes", MaxStringBytes)
				}
				scalar(v, entry, fd.MapValue(), mv)
				return true
			})
		case fd.IsList():
			l := val.List()
			if l.Len() > MaxListEntries {
				v.Add(path, "must have at most %d entries; got %d", MaxListEntries, l.Len())
				return true
			}
			for i := 0; i < l.Len(); i++ {
				scalar(v, path+"["+strconv.Itoa(i)+"]", fd, l.Get(i))
			}
		default:
			scalar(v, path, fd, val)
		}
		return true
	})
}

func scalar(v *Violations, path string, fd protoreflect.FieldDescriptor, val protoreflect.Value) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		bounds(v, path+".", val.Message())
	case protoreflect.StringKind, protoreflect.BytesKind:
		limit, ok := longFields[fd.FullName()]
		if !ok {
			limit = MaxStringBytes
		}
		// Value.String of bytes formats every byte: ask each kind for
		// its own length (a 4 MiB slice of an Arrow stream took seconds).
		var n int
		if fd.Kind() == protoreflect.BytesKind {
			n = len(val.Bytes())
		} else {
			n = len(val.String())
		}
		if limit > 0 && n > limit {
			v.Add(path, "must be at most %d bytes; got %d", limit, n)
		}
	case protoreflect.EnumKind:
		if fd.Enum().Values().ByNumber(val.Enum()) == nil {
			v.Add(path, "%d is not a value of %s", val.Enum(), fd.Enum().FullName())
		}
	}
}

func clip(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%s...", s[:40])
	}
	return s
}
