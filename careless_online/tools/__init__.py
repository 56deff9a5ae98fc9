"""Helper operations on MTZ files behind careless's helper commands (filter_image, bfactor, xds2mtz, ...)."""
