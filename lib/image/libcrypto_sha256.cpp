#include "lib/image/libcrypto_sha256.h"

#include <dlfcn.h>

#include <atomic>
#include <mutex>

namespace petrel::internal {
namespace {

// The libcrypto functions used, as OpenSSL 3 declares them (opaque pointers as void*).
struct Evp {
  void* (*ctx_new)();
  void (*ctx_free)(void*);
  const void* (*sha256)();
  int (*init)(void*, const void*, void*);
  int (*update)(void*, const void*, size_t);
  int (*final)(void*, unsigned char*, unsigned int*);
};

Evp g_evp;  // written once, under g_mu, before g_engine publishes it
std::mutex g_mu;
std::atomic<const Sha256Engine*> g_engine{nullptr};

void* EvpStart() {
  void* ctx = g_evp.ctx_new();
  if (ctx != nullptr && g_evp.init(ctx, g_evp.sha256(), nullptr) != 1) {
    g_evp.ctx_free(ctx);
    return nullptr;
  }
  return ctx;
}
void EvpUpdate(void* ctx, const void* data, size_t size) { (void)g_evp.update(ctx, data, size); }
void EvpFinish(void* ctx, unsigned char sum[32]) {
  unsigned int len = 32;
  (void)g_evp.final(ctx, sum, &len);
}
void EvpFree(void* ctx) { g_evp.ctx_free(ctx); }

const Sha256Engine kEngine = {EvpStart, EvpUpdate, EvpFinish, EvpFree};

template <typename F>
bool Find(void* handle, const char* name, F* f) {
  *f = reinterpret_cast<F>(dlsym(handle, name));
  return *f != nullptr;
}

}  // namespace

const Sha256Engine* LoadedLibcryptoSha256() {
  if (const Sha256Engine* e = g_engine.load(std::memory_order_acquire)) return e;
  std::lock_guard<std::mutex> lock(g_mu);
  if (const Sha256Engine* e = g_engine.load(std::memory_order_acquire)) return e;
  void* handle = dlopen("libcrypto.so.3", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
  if (handle == nullptr) return nullptr;
  Evp evp;
  if (!Find(handle, "EVP_MD_CTX_new", &evp.ctx_new) ||
      !Find(handle, "EVP_MD_CTX_free", &evp.ctx_free) || !Find(handle, "EVP_sha256", &evp.sha256) ||
      !Find(handle, "EVP_DigestInit_ex", &evp.init) ||
      !Find(handle, "EVP_DigestUpdate", &evp.update) ||
      !Find(handle, "EVP_DigestFinal_ex", &evp.final)) {
    dlclose(handle);
    return nullptr;
  }
  g_evp = evp;  // the handle stays open: libcrypto stays for as long as the process
  g_engine.store(&kEngine, std::memory_order_release);
  return &kEngine;
}

}  // namespace petrel::internal
