// Package apidescriptor serves Sluice's API descriptors with their source
// comments, so that server reflection (grpcurl describe) shows the
// documentation of every message and field. protoc-gen-go strips comments
// from the descriptors it embeds; `make gen` writes sluice.binpb with them
// (buf build), and this package falls back to the linked-in registry for
// everything else (health, reflection).
package apidescriptor

import (
	_ "embed"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

//go:embed sluice.binpb
var raw []byte

var (
	once  sync.Once
	files *protoregistry.Files
	err   error
)

// Resolver answers descriptors: Sluice's own with comments first, then those
// linked into the binary.
func Resolver() (protodesc.Resolver, error) {
	once.Do(func() {
		var set descriptorpb.FileDescriptorSet
		if err = proto.Unmarshal(raw, &set); err != nil {
			err = fmt.Errorf("api descriptors: %w", err)
			return
		}
		files, err = protodesc.NewFiles(&set)
		if err != nil {
			err = fmt.Errorf("api descriptors: %w", err)
		}
	})
	if err != nil {
		return nil, err
	}
	return resolver{files}, nil
}

type resolver struct{ own *protoregistry.Files }

func (r resolver) FindFileByPath(path string) (protoreflect.FileDescriptor, error) {
	fd, err := r.own.FindFileByPath(path)
	if errors.Is(err, protoregistry.NotFound) {
		return protoregistry.GlobalFiles.FindFileByPath(path)
	}
	return fd, err
}

func (r resolver) FindDescriptorByName(name protoreflect.FullName) (protoreflect.Descriptor, error) {
	d, err := r.own.FindDescriptorByName(name)
	if errors.Is(err, protoregistry.NotFound) {
		return protoregistry.GlobalFiles.FindDescriptorByName(name)
	}
	return d, err
}
