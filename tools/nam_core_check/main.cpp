// Runs a .nam file with NeuralAmpModelerCore (the NAM plugin's engine) over a raw input and
// writes the raw output, for tools/check_with_nam_core.sh.
//
// usage: nam_core_check MODEL.nam INPUT.f64 OUTPUT.f64 prewarm|noprewarm
//   INPUT/OUTPUT: raw little-endian float64, mono; runs in blocks of 512 samples.
//   prewarm: Reset with prewarm, as the plugin does (for a convolutional model, silence through
//   its receptive field: the zero history that `dealias process` starts from); noprewarm: the
//   file's own initial state (recurrent models, whose prewarm moves their stored state).
// Prints the time of the processing loop alone to stderr ("processed N samples in S s"), for
// tools/bench_with_nam_core.sh.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "NAM/dsp.h"
#include "NAM/get_dsp.h"

int main(int argc, char* argv[])
{
  if (argc != 5)
  {
    std::fprintf(stderr, "usage: nam_core_check MODEL.nam INPUT.f64 OUTPUT.f64 prewarm|noprewarm\n");
    return 2;
  }
  const bool prewarm = std::string(argv[4]) == "prewarm";
  nam::DspLoadOptions options;
  options.prewarm = false;
  std::unique_ptr<nam::DSP> model;
  try
  {
    model = nam::get_dsp(std::filesystem::path(argv[1]), options);
  }
  catch (const std::exception& e)
  {
    std::fprintf(stderr, "NeuralAmpModelerCore refused the file: %s\n", e.what());
    return 1;
  }
  if (model == nullptr)
  {
    std::fprintf(stderr, "NeuralAmpModelerCore returned no model\n");
    return 1;
  }
  std::ifstream in(argv[2], std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<double> x(bytes.size() / sizeof(double));
  std::memcpy(x.data(), bytes.data(), x.size() * sizeof(double));
  const int block = 512;
  const double rate = model->GetExpectedSampleRate() > 0 ? model->GetExpectedSampleRate() : 48000.0;
  model->SetPrewarmOnReset(prewarm);
  model->Reset(rate, block);
  std::vector<NAM_SAMPLE> inBuf(block), outBuf(block);
  std::vector<double> y(x.size());
  const auto began = std::chrono::steady_clock::now();
  for (size_t start = 0; start < x.size(); start += block)
  {
    const int n = static_cast<int>(std::min<size_t>(block, x.size() - start));
    for (int i = 0; i < n; i++)
      inBuf[i] = static_cast<NAM_SAMPLE>(x[start + i]);
    NAM_SAMPLE* inPtr = inBuf.data();
    NAM_SAMPLE* outPtr = outBuf.data();
    model->process(&inPtr, &outPtr, n);
    for (int i = 0; i < n; i++)
      y[start + i] = static_cast<double>(outBuf[i]);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  std::fprintf(stderr, "processed %zu samples in %.6f s\n", x.size(), seconds);
  std::ofstream out(argv[3], std::ios::binary);
  out.write(reinterpret_cast<const char*>(y.data()), y.size() * sizeof(double));
  return 0;
}
