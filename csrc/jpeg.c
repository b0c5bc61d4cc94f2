// Partial, downscaled JPEG decoding over the libjpeg API of libjpeg-turbo (>= 2.0: it has
// jpeg_crop_scanline and jpeg_skip_scanlines): what a random-resized crop needs of an image and
// nothing more. Rows below the region are never entropy-decoded, rows above it are
// entropy-decoded only, columns outside it get no IDCT, upsampling or colour conversion, and a
// scale of 1/2, 1/4 or 1/8 is applied inside the IDCT. The caller learns the image's size from
// its own walk over the markers (src/data/jpeg.rs), so libjpeg reads each header once. Errors
// come back as a return code and a message (libjpeg's error_exit longjmps here instead of
// exiting); nothing is kept between calls.
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

// A progressive file may hold any number of scans, each a pass over the whole image: more than
// this is a crafted file (libjpeg-turbo's djpeg uses the same kind of limit).
#define SAMIX_MAX_SCANS 500

struct samix_jpeg_error {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  char* msg;
  size_t msg_len;
};

struct samix_jpeg_progress {
  struct jpeg_progress_mgr pub;
  char* msg;
  size_t msg_len;
};

static void samix_jpeg_error_exit(j_common_ptr cinfo) {
  struct samix_jpeg_error* err = (struct samix_jpeg_error*)cinfo->err;
  char text[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, text);
  snprintf(err->msg, err->msg_len, "%s", text);
  longjmp(err->jump, 1);
}

// Warnings (corrupt data the decoder recovers from) are not printed to stderr from a loader
// thread; Pillow ignores them too. A truncated file is refused before decoding by the caller.
static void samix_jpeg_quiet(j_common_ptr cinfo, int level) {
  (void)cinfo;
  (void)level;
}

static void samix_jpeg_scan_limit(j_common_ptr cinfo) {
  j_decompress_ptr d = (j_decompress_ptr)cinfo;
  if (d->input_scan_number > SAMIX_MAX_SCANS) {
    struct samix_jpeg_error* err = (struct samix_jpeg_error*)cinfo->err;
    snprintf(err->msg, err->msg_len, "more than %d progressive scans (a crafted file)", SAMIX_MAX_SCANS);
    longjmp(err->jump, 1);
  }
}

// Installs the error manager that reports into `msg` and longjmps to `err->jump` (which the
// caller sets with setjmp in its own frame, the one that must stay alive while libjpeg runs).
static void samix_jpeg_errors(struct jpeg_decompress_struct* cinfo, struct samix_jpeg_error* err, char* msg,
                              size_t msg_len) {
  cinfo->err = jpeg_std_error(&err->pub);
  err->pub.error_exit = samix_jpeg_error_exit;
  err->pub.emit_message = samix_jpeg_quiet;
  err->msg = msg;
  err->msg_len = msg_len;
}

// Decodes rows [y, y+h) and columns [x, x+w) of the image scaled by 1/scale (1, 2, 4 or 8;
// coordinates are in the scaled image) into `out` as RGB rows (h rows of w interleaved pixels,
// as libjpeg writes them), so `capacity` must be at least 3·h·w. Grey images come out with three
// equal channels. The pixels are those of a full decode at that scale. `expected` is the width,
// height and component count the caller read from the header; libjpeg must read the same.
// Returns 0, or -1 with `msg` filled.
int samix_jpeg_decode_region(const uint8_t* data, size_t len, const int expected[3], int scale, int x, int y, int w,
                             int h, uint8_t* out, size_t capacity, char* msg, size_t msg_len) {
  struct jpeg_decompress_struct cinfo;
  struct samix_jpeg_error err;
  struct samix_jpeg_progress progress;
  JSAMPROW row = NULL;
  samix_jpeg_errors(&cinfo, &err, msg, msg_len);
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  jpeg_create_decompress(&cinfo);
  progress.pub.progress_monitor = samix_jpeg_scan_limit;
  cinfo.progress = &progress.pub;
  jpeg_mem_src(&cinfo, data, (unsigned long)len);
  jpeg_read_header(&cinfo, TRUE);
  // The caller sized the region and the memory budget from its own reading of the frame header;
  // a file built to read differently to libjpeg is refused before any buffer is allocated.
  if ((int)cinfo.image_width != expected[0] || (int)cinfo.image_height != expected[1] ||
      cinfo.num_components != expected[2]) {
    snprintf(msg, msg_len, "libjpeg reads a %ux%u image of %d components, the marker walk %dx%d of %d",
             cinfo.image_width, cinfo.image_height, cinfo.num_components, expected[0], expected[1], expected[2]);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  if (cinfo.num_components != 1 && cinfo.num_components != 3) {
    snprintf(msg, msg_len, "%d colour components (only grey and RGB/YCbCr decode partially)", cinfo.num_components);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  cinfo.scale_num = 1;
  cinfo.scale_denom = (unsigned int)scale;
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress(&cinfo);
  if (x < 0 || y < 0 || w <= 0 || h <= 0 || (JDIMENSION)(x + w) > cinfo.output_width ||
      (JDIMENSION)(y + h) > cinfo.output_height) {
    snprintf(msg, msg_len, "region %d,%d %dx%d outside the %ux%u image at 1/%d", x, y, w, h, cinfo.output_width,
             cinfo.output_height, scale);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  // libjpeg widens a cropped decode leftwards to a whole iMCU, and upsamples chroma at the crop's
  // first and last columns as if they were the image's edges (libjpeg-turbo 2.1: up to ~50 grey
  // levels off a full decode), so one column more is decoded on each side where the image has one
  // and only columns [x, x+w) are kept.
  JDIMENSION xoffset = (JDIMENSION)(x > 0 ? x - 1 : 0);
  JDIMENSION width = (JDIMENSION)(x + w) - xoffset;
  if ((JDIMENSION)(x + w) < cinfo.output_width) width += 1;
  if (width < cinfo.output_width) jpeg_crop_scanline(&cinfo, &xoffset, &width);
  size_t row_bytes = 3 * (size_t)w;
  if (row_bytes * (size_t)h > capacity || xoffset > (JDIMENSION)x || xoffset + width < (JDIMENSION)(x + w)) {
    snprintf(msg, msg_len, "decoded columns %u..%u do not cover %d..%d, or the buffer is too small", xoffset,
             xoffset + width, x, x + w);
    jpeg_destroy_decompress(&cinfo);
    return -1;
  }
  row = (JSAMPROW)(*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, width * 3, 1)[0];
  if (y > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)y);
  JDIMENSION skip = (JDIMENSION)x - xoffset;
  for (int r = 0; r < h; r++) {
    if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
      snprintf(msg, msg_len, "the decoder stopped at row %d of the region", r);
      jpeg_destroy_decompress(&cinfo);
      return -1;
    }
    memcpy(out + (size_t)r * row_bytes, row + 3 * skip, row_bytes);
  }
  // The rows below are never read: aborting frees the decoder without decoding them.
  jpeg_abort_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return 0;
}
