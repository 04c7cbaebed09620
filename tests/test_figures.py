"""Figures drawn from plain arrays: heatmaps on white for grey images, over the picture for colour ones."""
import numpy as np

from ui import figures


def a_heatmap():
    heat = np.zeros((4, 4))
    heat[0, 0], heat[1, 1], heat[2, 2] = 2.0, -2.0, 0.5
    return heat


def test_a_grey_image_keeps_the_heatmap_on_white():
    heat, grey = a_heatmap(), np.full((1, 4, 4), 0.3)
    for image in (None, grey):
        rgb = figures.heat_rgb(heat, image)
        assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
        assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[1, 1].tolist() == [0, 0, 255]
        assert rgb[3, 3].tolist() == [255, 255, 255]                    # no relevance: white
        assert rgb[2, 2].tolist() == [255, 191, 191]                    # a quarter of the largest: pale red


def test_a_colour_image_shows_under_its_heatmap():
    heat = a_heatmap()
    image = np.zeros((3, 4, 4))
    image[1] = 1.0                                                       # pure green picture
    image[:, 3, 3] = 0.0                                                 # one black pixel
    rgb = figures.heat_rgb(heat, image).astype(int)
    faded_green = 0.35 + 0.65 * 0.587
    assert rgb[0, 3].tolist() == [round(255 * faded_green)] * 3          # no relevance: the faded picture
    assert rgb[3, 3].tolist() == [round(255 * 0.35)] * 3                 # a black pixel stays darker
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[1, 1].tolist() == [0, 0, 255]   # strongest: pure
    # a quarter of the largest relevance shows at half opacity, red over the faded picture
    assert rgb[2, 2].tolist() == [round(255 * (0.5 * faded_green + 0.5)), round(255 * faded_green / 2),
                                  round(255 * faded_green / 2)]


def test_the_plotly_strip_draws_a_colour_image_under_a_heatmap_that_still_answers_the_hover():
    heat, colour = a_heatmap(), np.full((3, 4, 4), 0.5)
    fig = figures.heatmaps([heat, -heat], ["a", "b"], colour)
    images = [t for t in fig.data if t.type == "image"]
    hovers = [t for t in fig.data if t.type == "heatmap"]
    assert len(images) == 2 and len(hovers) == 2 and all(t.opacity == 0 for t in hovers)
    assert np.array_equal(np.asarray(images[1].z), figures.heat_rgb(-heat, colour))
    plain = figures.heatmaps([heat], ["a"], np.full((1, 4, 4), 0.5))
    assert [t.type for t in plain.data] == ["heatmap"] and plain.data[0].opacity == 1
