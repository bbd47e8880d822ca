"""Opening and checking a segment raster and an optional image on its grid."""

from dataclasses import dataclass

from ..errors import TesseraError
from ..io.raster_io import (
    band_dtype,
    band_nodata,
    check_same_grid,
    get_band,
    open_raster,
    raster_name,
)
from .pipeline import segment_null_id


@dataclass
class SegmentInputs:
    """The open segment raster (and image), checked to share one grid."""

    segments: object        # gdal.Dataset
    segment_band: int
    null_id: int            # the segment band's nodata value, else 0
    image: object = None    # gdal.Dataset or None
    image_band: int = 0
    image_dtype: object = None
    image_nodata: object = None   # int, float or None

    @property
    def geotransform(self):
        return self.segments.GetGeoTransform()


def open_segment_inputs(segments, image=None, segment_band=1, image_band=1):
    """Open ``segments`` (integer ids) and ``image`` (None allowed) and check their grids."""
    seg_ds = open_raster(segments)
    seg_band = get_band(seg_ds, int(segment_band), "segment raster")
    seg_dtype = band_dtype(seg_band)
    if seg_dtype.kind not in "iu":
        raise TesseraError(
            f"The segment raster {raster_name(seg_ds)} holds {seg_dtype} values; segment ids "
            "must be integers."
        )
    inputs = SegmentInputs(seg_ds, int(segment_band), segment_null_id(seg_band))
    if image is not None:
        img_ds = open_raster(image)
        band = get_band(img_ds, int(image_band), "image")
        check_same_grid(seg_ds, img_ds, "segment raster", "image")
        inputs.image = img_ds
        inputs.image_band = int(image_band)
        inputs.image_dtype = band_dtype(band)
        inputs.image_nodata = band_nodata(band)
    return inputs
