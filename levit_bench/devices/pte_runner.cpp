// The board's side of levit-bench's ARM check of an ExecuTorch program: runs the `forward` method
// of a `.pte` on one float32 input read from a file and writes its first output, float32, to
// another. Built for aarch64 by the cross compiler against the aarch64 executorch wheel's own
// runtime libraries and run under QEMU (devices/arm_executorch.py); it takes no timings.
//
//   pte_runner PROGRAM.pte INPUT.f32 OUTPUT.f32 THREADS DIM [DIM ...]
//
// On success it prints {"shape": [...], "threads": N, "midr": M, "hwcap": H, "hwcap2": H2} on
// stdout (the CPU it ran on, as its ID register and the kernel's feature bits tell it); on
// failure, one line on stderr and a non-zero exit.
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <sys/auxv.h>

// The wheel ships libexecutorch_threadpool.so but not its header: the two member functions used
// here, declared as that library defines them (non-virtual, so called by name, not by layout).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

using executorch::aten::ScalarType;
using executorch::extension::from_blob;
using executorch::extension::Module;

static int fail(const std::string& message) {
  std::fprintf(stderr, "pte_runner: %s\n", message.c_str());
  return 1;
}

static unsigned long long midr() {
  unsigned long long value = 0;
#if defined(__aarch64__)
  asm volatile("mrs %0, midr_el1" : "=r"(value));  // read at EL0: Linux (or QEMU) emulates it
#endif
  return value;
}

static long positive(const char* text) {
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  return (end && *end == '\0' && value > 0) ? value : 0;
}

int main(int argc, char** argv) {
  if (argc < 6) {
    return fail("usage: pte_runner PROGRAM.pte INPUT.f32 OUTPUT.f32 THREADS DIM [DIM ...]");
  }
  const long threads = positive(argv[4]);
  if (threads == 0) {
    return fail(std::string("not a thread count: ") + argv[4]);
  }
  std::vector<executorch::aten::SizesType> sizes;
  size_t count = 1;
  for (int i = 5; i < argc; ++i) {
    const long dim = positive(argv[i]);
    if (dim == 0) {
      return fail(std::string("not a dimension: ") + argv[i]);
    }
    sizes.push_back(static_cast<executorch::aten::SizesType>(dim));
    count *= static_cast<size_t>(dim);
  }
  std::vector<float> input(count);
  std::ifstream in(argv[2], std::ios::binary);
  if (!in.read(reinterpret_cast<char*>(input.data()), static_cast<std::streamsize>(count * sizeof(float)))) {
    return fail("cannot read " + std::to_string(count) + " floats from " + argv[2]);
  }
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool == nullptr || !pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads))) {
    return fail("cannot size XNNPACK's thread pool to " + std::to_string(threads) + " threads");
  }
  Module module(argv[1], Module::LoadMode::File);
  auto outputs = module.forward(from_blob(input.data(), sizes, ScalarType::Float));
  if (!outputs.ok()) {
    return fail("forward failed: ExecuTorch error " + std::to_string(static_cast<int>(outputs.error())));
  }
  if (outputs->empty() || !outputs->at(0).isTensor()) {
    return fail("forward returned no tensor");
  }
  const auto& output = outputs->at(0).toTensor();
  if (output.scalar_type() != ScalarType::Float) {
    return fail("forward's output is not float32");
  }
  std::ofstream out(argv[3], std::ios::binary);
  out.write(reinterpret_cast<const char*>(output.const_data_ptr<float>()),
            static_cast<std::streamsize>(output.numel() * sizeof(float)));
  if (!out.flush()) {
    return fail(std::string("cannot write ") + argv[3]);
  }
  std::printf("{\"shape\": [");
  for (int i = 0; i < output.dim(); ++i) {
    std::printf(i ? ", %d" : "%d", static_cast<int>(output.size(i)));
  }
  std::printf("], \"threads\": %zu, \"midr\": %llu, \"hwcap\": %lu, \"hwcap2\": %lu}\n",
              pool->get_thread_count(), midr(), getauxval(AT_HWCAP), getauxval(AT_HWCAP2));
  return 0;
}
