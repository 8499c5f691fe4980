// Compares the CUDA click-encoding kernel with a plain C++ reference, element by element.
// Exit codes: 0 all equal, 1 a mismatch or CUDA error, 77 no CUDA device (CTest: skipped).

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "click_maps.cu"  // the same source the Python package compiles through CuPy

namespace {

struct Case {
    int height, width, classes, clicks, cap;
};

// Plain reference: no clamping, 64-bit arithmetic, loops in the obvious order.
std::vector<float> reference(const std::vector<int>& clicks, int k, int classes, int height, int width, int cap) {
    std::vector<float> out(static_cast<size_t>(classes) * height * width, static_cast<float>(cap));
    for (int c = 0; c < classes; ++c) {
        for (int y = 0; y < height; ++y) {
            for (int x = 0; x < width; ++x) {
                long long best = cap;
                for (int i = 0; i < k; ++i) {
                    if (clicks[3 * i + 2] != c) continue;
                    const long long dx = x - clicks[3 * i];
                    const long long dy = y - clicks[3 * i + 1];
                    const long long d = dx * dx + dy * dy;
                    if (d < best) best = d;
                }
                out[(static_cast<size_t>(c) * height + y) * width + x] = static_cast<float>(best);
            }
        }
    }
    return out;
}

bool check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) {
        std::fprintf(stderr, "CUDA error in %s: %s\n", what, cudaGetErrorString(status));
        return false;
    }
    return true;
}

}  // namespace

int main() {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("no CUDA device: skipping\n");
        return 77;
    }
    const Case cases[] = {{1, 1, 1, 0, 255},    {1, 1, 3, 1, 255},     {7, 300, 5, 5, 255},  {473, 473, 20, 60, 255},
                          {517, 300, 7, 33, 255}, {64, 64, 11, 40, 16}, {50, 80, 4, 12, 1},  {90, 70, 20, 60, 1000}};
    std::mt19937 rng(20261124);
    size_t compared = 0;
    int index = 0;
    for (const Case& cs : cases) {
        std::vector<int> clicks(3 * static_cast<size_t>(cs.clicks));
        for (int i = 0; i < cs.clicks; ++i) {
            clicks[3 * i] = std::uniform_int_distribution<int>(0, cs.width - 1)(rng);
            clicks[3 * i + 1] = std::uniform_int_distribution<int>(0, cs.height - 1)(rng);
            clicks[3 * i + 2] = std::uniform_int_distribution<int>(0, cs.classes - 1)(rng);
        }
        const std::vector<float> want = reference(clicks, cs.clicks, cs.classes, cs.height, cs.width, cs.cap);
        float* d_out = nullptr;
        int* d_clicks = nullptr;
        const size_t n = want.size();
        if (!check(cudaMalloc(&d_out, n * sizeof(float)), "cudaMalloc(out)") ||
            !check(cudaMalloc(&d_clicks, std::max<size_t>(1, clicks.size()) * sizeof(int)), "cudaMalloc(clicks)")) {
            return 1;
        }
        if (!clicks.empty() &&
            !check(cudaMemcpy(d_clicks, clicks.data(), clicks.size() * sizeof(int), cudaMemcpyHostToDevice), "copy in")) {
            return 1;
        }
        const dim3 block(32, 8, 1);
        const dim3 grid((cs.width + 31) / 32, (cs.height + 7) / 8, cs.classes);
        const int reach = static_cast<int>(std::sqrt(static_cast<double>(cs.cap)));
        ihp_click_maps<<<grid, block>>>(d_out, d_clicks, cs.clicks, cs.classes, cs.height, cs.width, cs.cap, reach);
        if (!check(cudaGetLastError(), "kernel launch") || !check(cudaDeviceSynchronize(), "kernel")) return 1;
        std::vector<float> got(n);
        if (!check(cudaMemcpy(got.data(), d_out, n * sizeof(float), cudaMemcpyDeviceToHost), "copy out")) return 1;
        cudaFree(d_out);
        cudaFree(d_clicks);
        for (size_t i = 0; i < n; ++i) {
            if (got[i] != want[i]) {
                std::fprintf(stderr, "case %d (%dx%d, %d classes, %d clicks, cap %d): element %zu is %g, want %g\n",
                             index, cs.height, cs.width, cs.classes, cs.clicks, cs.cap, i, got[i], want[i]);
                return 1;
            }
        }
        compared += n;
        ++index;
    }
    std::printf("click_maps kernel == C++ reference: %d cases, %zu elements, max abs diff 0\n", index, compared);
    return 0;
}
