"""modelmeter."""
