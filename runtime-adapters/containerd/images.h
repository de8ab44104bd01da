// An image into containerd's own stores (issue 16), from what petrel's image code reads
// of it (lib/image/layout.h: an OCI layout or `docker save` output, from a directory or
// a tar): its layers as they are and its config into the content store, with an OCI
// manifest that names them; the manifest under the image's name in the Images service;
// and the layers unpacked by containerd itself (Snapshots + Diff) into a chain of
// committed snapshots, on the top one of which a container's root is an active
// snapshot. The blobs carry the labels that tell containerd's garbage collection what
// holds what (the manifest its config and layers, the config its top snapshot), and all
// is made under a lease of its own (which runs out by itself an hour later should
// petrel die meanwhile), dropped once the image's name holds it.
//
// Blobs and snapshots containerd has already are neither sent nor unpacked again; each
// is checked by containerd (a blob's digest and size at its commit, a layer's diff id
// against the config's).
//
// Thread-safety: one import per call; imports of different images may run at once.
#ifndef PETREL_RUNTIME_ADAPTERS_CONTAINERD_IMAGES_H_
#define PETREL_RUNTIME_ADAPTERS_CONTAINERD_IMAGES_H_

#include <map>
#include <string>
#include <vector>

#include "lib/image/layout.h"
#include "lib/image/source.h"
#include "petrel/status.h"
#include "runtime-adapters/containerd/grpc.h"
#include "runtime-adapters/containerd/services.h"

namespace petrel::internal {

// The chain id of the layers whose diff ids are `diff_ids` (bottom first), as the OCI
// image spec defines it: the first layer's diff id, then sha256 of "<chain> <diff id>".
// "" for none.
std::string ContainerdChainId(const std::vector<std::string>& diff_ids);

// What ContainerdImportImage made.
struct ContainerdImported {
  std::string manifest;  // the manifest's digest: the image's target
  std::string chain_id;  // the top layer's committed snapshot
};

// Imports the image `plan` describes, its files read from `source`, as `name` (a
// reference: "docker.io/library/busybox:latest") with `labels` on the name, through
// channels made with `options` (containerd's socket and namespace; no lease), its layers
// unpacked by `snapshotter` ("overlayfs"). A name that named another image, or this
// one with other labels, is made anew. Errors name the blob or layer and say what
// containerd said.
Result<ContainerdImported> ContainerdImportImage(
    GrpcChannel::Options options, const std::string& snapshotter, const std::string& name,
    ImageSource* source, const ImagePlan& plan,
    const std::map<std::string, std::string>& labels = {});

// Names image `image` (its target and labels) also `name`, made anew when it named
// another image or had other labels.
Status ContainerdNameImage(GrpcChannel* channel, const std::string& name,
                           const ContainerdImage& image);

}  // namespace petrel::internal

#endif  // PETREL_RUNTIME_ADAPTERS_CONTAINERD_IMAGES_H_
