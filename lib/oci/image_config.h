// What an image's config says about running it (the OCI image config, or Docker's):
// the plain values the runtime config is made from. Who reads images fills it (the
// image store from the config blob; a daemon's adapter from the daemon's answer).
//
// Thread-safety: a value.
#ifndef PETREL_LIB_OCI_IMAGE_CONFIG_H_
#define PETREL_LIB_OCI_IMAGE_CONFIG_H_

#include <string>
#include <vector>

namespace petrel::internal {

struct ImageConfig {
  std::vector<std::string> entrypoint, cmd, env;  // env as "K=V"
  std::string working_dir, user;
};

}  // namespace petrel::internal

#endif  // PETREL_LIB_OCI_IMAGE_CONFIG_H_
