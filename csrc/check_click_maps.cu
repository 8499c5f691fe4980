// Compares the CUDA click-encoding kernel with a plain C++ reference, element by element, on
// deterministic pseudo-random cases (fixed-seed std::mt19937). The kernel is the package's own
// source, included below, not a copy.
// Exit codes: 0 every element equal, 1 a mismatch or CUDA error, 77 no CUDA device (CTest: skipped).

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include <cuda_runtime.h>

#include "../ihp_rt/encoding/click_maps.cu"  // the same source the Python package compiles through CuPy

namespace {

struct Case {
    int height, width, classes, clicks, cap;
};

#define CUDA_CHECK(call)                                                                                   \
    do {                                                                                                   \
        const cudaError_t status_ = (call);                                                                \
        if (status_ != cudaSuccess) {                                                                      \
            std::fprintf(stderr, "CUDA error at %s:%d in %s: %s\n", __FILE__, __LINE__, #call,            \
                         cudaGetErrorString(status_));                                                     \
            return false;                                                                                  \
        }                                                                                                  \
    } while (0)

// floor(sqrt(n)) in integers, the same as Python's math.isqrt used by ihp_rt.encoding.reference.reach.
int isqrt(int n) {
    std::int64_t r = 0;
    while ((r + 1) * (r + 1) <= n) ++r;
    return static_cast<int>(r);
}

// Plain reference: 64-bit arithmetic, no clamping, loops in the obvious order.
std::vector<float> reference(const std::vector<int>& clicks, const Case& cs) {
    std::vector<float> out(static_cast<std::size_t>(cs.classes) * cs.height * cs.width);
    for (int c = 0; c < cs.classes; ++c) {
        for (int y = 0; y < cs.height; ++y) {
            for (int x = 0; x < cs.width; ++x) {
                std::int64_t best = cs.cap;
                for (int i = 0; i < cs.clicks; ++i) {
                    if (clicks[3 * i + 2] != c) continue;
                    const std::int64_t dx = static_cast<std::int64_t>(x) - clicks[3 * i];
                    const std::int64_t dy = static_cast<std::int64_t>(y) - clicks[3 * i + 1];
                    const std::int64_t d = dx * dx + dy * dy;
                    if (d < best) best = d;
                }
                out[(static_cast<std::size_t>(c) * cs.height + y) * cs.width + x] = static_cast<float>(best);
            }
        }
    }
    return out;
}

// Runs the kernel with the launch shape ihp_rt/encoding/cuda.py uses. False on any CUDA error.
bool run_kernel(const std::vector<int>& clicks, const Case& cs, std::vector<float>& got) {
    const std::size_t n = got.size();
    float* d_out = nullptr;
    int* d_clicks = nullptr;
    CUDA_CHECK(cudaMalloc(&d_out, n * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&d_clicks, (clicks.empty() ? 1 : clicks.size()) * sizeof(int)));
    // Poison the output so an element the kernel never writes cannot pass by accident.
    CUDA_CHECK(cudaMemset(d_out, 0xff, n * sizeof(float)));
    if (!clicks.empty()) {
        CUDA_CHECK(cudaMemcpy(d_clicks, clicks.data(), clicks.size() * sizeof(int), cudaMemcpyHostToDevice));
    }
    const dim3 block(32, 8, 1);
    const dim3 grid((cs.width + 31) / 32, (cs.height + 7) / 8, cs.classes);
    ihp_click_maps<<<grid, block>>>(d_out, d_clicks, cs.clicks, cs.classes, cs.height, cs.width, cs.cap,
                                    isqrt(cs.cap));
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(got.data(), d_out, n * sizeof(float), cudaMemcpyDeviceToHost));
    CUDA_CHECK(cudaFree(d_out));
    CUDA_CHECK(cudaFree(d_clicks));
    return true;
}

std::vector<Case> make_cases(std::mt19937& rng) {
    const int sizes[][2] = {{1, 1}, {7, 300}, {300, 7}, {64, 64}, {473, 473}, {517, 300}};
    const int click_counts[] = {0, 1, 5, 60};
    const int other_caps[] = {1, 16, 1000, (1 << 24) - 1};
    std::uniform_int_distribution<int> some_classes(1, 20);
    std::vector<Case> cases;
    int i = 0;
    for (const auto& hw : sizes) {
        for (const int k : click_counts) {
            // Class counts cycle through the extremes (1 and 20) and a random one in between.
            const int classes = i % 3 == 0 ? 1 : (i % 3 == 1 ? 20 : some_classes(rng));
            cases.push_back({hw[0], hw[1], classes, k, 255});
            ++i;
        }
        for (const int cap : other_caps) {
            cases.push_back({hw[0], hw[1], some_classes(rng), 60, cap});
        }
    }
    return cases;
}

}  // namespace

int main() {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("no CUDA device: skipping\n");
        return 77;
    }
    std::mt19937 rng(20261124);
    const std::vector<Case> cases = make_cases(rng);
    std::size_t compared = 0;
    std::size_t mismatches = 0;
    double max_diff = 0.0;
    for (std::size_t index = 0; index < cases.size(); ++index) {
        const Case& cs = cases[index];
        std::vector<int> clicks(3 * static_cast<std::size_t>(cs.clicks));
        for (int i = 0; i < cs.clicks; ++i) {
            clicks[3 * i] = std::uniform_int_distribution<int>(0, cs.width - 1)(rng);
            clicks[3 * i + 1] = std::uniform_int_distribution<int>(0, cs.height - 1)(rng);
            clicks[3 * i + 2] = std::uniform_int_distribution<int>(0, cs.classes - 1)(rng);
        }
        const std::vector<float> want = reference(clicks, cs);
        std::vector<float> got(want.size());
        if (!run_kernel(clicks, cs, got)) {
            std::fprintf(stderr, "case %zu (%dx%d, %d classes, %d clicks, cap %d) failed\n", index, cs.height,
                         cs.width, cs.classes, cs.clicks, cs.cap);
            return 1;
        }
        for (std::size_t e = 0; e < want.size(); ++e) {
            if (got[e] == want[e]) continue;  // exact equality: every value is an integer below 2**24
            const double diff = got[e] != got[e] ? INFINITY : std::fabs(double(got[e]) - double(want[e]));
            if (mismatches == 0) {
                const std::size_t plane = static_cast<std::size_t>(cs.height) * cs.width;
                std::fprintf(stderr,
                             "first mismatch: case %zu (%dx%d, %d classes, %d clicks, cap %d), class %zu y %zu x %zu:"
                             " kernel %.9g, reference %.9g\n",
                             index, cs.height, cs.width, cs.classes, cs.clicks, cs.cap, e / plane,
                             (e % plane) / cs.width, e % cs.width, got[e], want[e]);
            }
            ++mismatches;
            if (diff > max_diff) max_diff = diff;
        }
        compared += want.size();
    }
    std::printf("click_maps kernel vs C++ reference: %zu cases, %zu elements compared, %zu mismatches, max abs diff %g\n",
                cases.size(), compared, mismatches, max_diff);
    return mismatches == 0 ? 0 : 1;
}
