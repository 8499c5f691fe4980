// Click encoding kernel (paper Eq. 1), the one CUDA source of ihp-rt.
//
// Loaded at run time by ihp_rt/encoding/cuda.py (CuPy RawModule) and compiled by CMake into
// csrc/check_click_maps (compared with a C++ reference). Keep it plain C so both can use it.
//
// out:    float32 maps, (num_classes, height, width), C-contiguous. It may point into a larger
//         buffer (e.g. channels 3.. of the network input) so maps are written in place.
// clicks: int32 rows of (x, y, label), num_clicks rows, in device memory.
// Each thread owns one (class, row, column) element: min over that class's clicks of the
// squared distance, truncated at cap. Offsets are clamped to +-(reach + 1) before squaring so
// huge frames cannot overflow int32; a clamped offset is beyond reach, so results are exact.

extern "C" __global__ void ihp_click_maps(float* __restrict__ out,
                                          const int* __restrict__ clicks,
                                          int num_clicks, int num_classes, int height,
                                          int width, int cap, int reach)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    const int c = blockIdx.z;
    if (x >= width || y >= height || c >= num_classes) {
        return;
    }
    const int limit = reach + 1;
    int best = cap;
    for (int k = 0; k < num_clicks; ++k) {
        if (clicks[3 * k + 2] != c) {
            continue;
        }
        int dx = x - clicks[3 * k];
        int dy = y - clicks[3 * k + 1];
        dx = dx < -limit ? -limit : (dx > limit ? limit : dx);
        dy = dy < -limit ? -limit : (dy > limit ? limit : dy);
        const int d = dx * dx + dy * dy;
        best = d < best ? d : best;
    }
    out[((size_t)c * height + y) * width + x] = (float)best;
}
