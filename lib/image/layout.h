// Reading what an image is made of from its layout: an OCI image layout (index.json,
// manifests, config, layer blobs) or `docker save` output (manifest.json, config, layer
// tars). The small JSON documents are read whole (at most kMaxJsonSize bytes each) and
// checked against their digests; layers are only named here, streamed later.
//
// Thread-safety: none.
#ifndef PETREL_LIB_IMAGE_LAYOUT_H_
#define PETREL_LIB_IMAGE_LAYOUT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lib/image/image_store.h"
#include "lib/image/source.h"
#include "petrel/status.h"

namespace petrel::internal {

constexpr size_t kMaxJsonSize = 8 << 20;

struct LayerRef {
  std::string name;     // file in the source
  std::string digest;   // of the blob as stored; "" when the layout does not say
  int64_t size = -1;    // of the blob as stored; -1 when the layout does not say
  std::string diff_id;  // of the uncompressed tar (from the config)
};

// An image as its layout describes it.
struct ImagePlan {
  std::string id;           // digest of config_json
  std::string config_json;  // the config blob as stored
  ImageConfig config;
  std::vector<LayerRef> layers;  // bottom first
};

// Reads an OCI image layout; `tag` "" means the first manifest of index.json.
// NotFound when no manifest is tagged `tag`.
Result<ImagePlan> ReadOciLayout(ImageSource* source, const std::string& tag);

// Reads `docker save` output (its first image).
Result<ImagePlan> ReadDockerArchive(ImageSource* source);

// Parses an image config blob: what to run, and the layers' diff_ids when `diff_ids` is
// not null. InvalidArgument says which field is wrong.
Result<ImageConfig> ParseImageConfig(const std::string& config_json,
                                     std::vector<std::string>* diff_ids);

}  // namespace petrel::internal

#endif  // PETREL_LIB_IMAGE_LAYOUT_H_
