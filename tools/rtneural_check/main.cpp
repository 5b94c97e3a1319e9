// Runs an AIDA-X / RTNeural JSON model with RTNeural itself, the way the AIDA-X plugin does
// (RTNeural's json_parser, then the plugin's chain y = G_out (net(G_in x) + in_skip G_in x),
// knob values after the audio sample), so that dealias' reading and writing of these files
// can be checked against the real engine. Built and run by tools/check_with_rtneural.sh.
//
// usage: rtneural_check MODEL.json [IN.f64 OUT.f64 [KNOB...]]
//   prints the model's own test-vector error (input_batch -> output_batch, bare network,
//   knobs 0) relative to the vectors' peak; with IN/OUT runs the whole chain over raw
//   little-endian float64 samples.
#include <RTNeural/RTNeural.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <vector>

static std::vector<double> read_f64(const char* path)
{
    std::ifstream f(path, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<double> v(bytes.size() / 8);
    std::memcpy(v.data(), bytes.data(), v.size() * 8);
    return v;
}

static double db_gain(const nlohmann::json& j, const char* key)
{
    return j.contains(key) && j[key].is_number() ? std::pow(10.0, j[key].get<double>() / 20.0) : 1.0;
}

int main(int argc, char** argv)
{
    if(argc < 2)
    {
        std::fprintf(stderr, "usage: %s MODEL.json [IN.f64 OUT.f64 [KNOB...]]\n", argv[0]);
        return 2;
    }
    std::ifstream f(argv[1]);
    nlohmann::json j;
    f >> j;
    auto model = RTNeural::json_parser::parseJson<double>(j, false);
    if(!model)
    {
        std::fprintf(stderr, "RTNeural could not parse %s\n", argv[1]);
        return 1;
    }
    const int inputs = j["in_shape"].back().get<int>();
    const bool skip = j.contains("in_skip") && j["in_skip"].is_number() && j["in_skip"].get<int>() == 1;
    const double g_in = db_gain(j, "in_gain"), g_out = db_gain(j, "out_gain");
    std::vector<double> in(inputs, 0.0);

    if(j.contains("input_batch") && j.contains("output_batch"))
    {
        auto x = j["input_batch"].get<std::vector<double>>();
        auto want = j["output_batch"].get<std::vector<double>>();
        model->reset();
        double err = 0.0, peak = 0.0;
        for(size_t i = 0; i < x.size() && i < want.size(); ++i)
        {
            in[0] = x[i];
            const double y = model->forward(in.data()) + (skip ? x[i] : 0.0);
            err = std::max(err, std::abs(y - want[i]));
            peak = std::max(peak, std::abs(want[i]));
        }
        std::printf("test vectors: max error %.3e of peak\n", err / std::max(peak, 1e-30));
    }
    if(argc >= 4)
    {
        auto x = read_f64(argv[2]);
        for(int k = 1; k < inputs; ++k)
            in[k] = argc > 3 + k ? std::atof(argv[3 + k]) : 0.0;
        model->reset();
        std::vector<double> y(x.size());
        for(size_t i = 0; i < x.size(); ++i)
        {
            const double xs = g_in * x[i];
            in[0] = xs;
            y[i] = g_out * (model->forward(in.data()) + (skip ? xs : 0.0));
        }
        std::ofstream o(argv[3], std::ios::binary);
        o.write(reinterpret_cast<const char*>(y.data()), (std::streamsize)(y.size() * 8));
    }
    return 0;
}
