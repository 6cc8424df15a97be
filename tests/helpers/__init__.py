"""Code the tests share: real nodes, real servers, the real images. Tests import from here (or use
conftest fixtures), never from another test module."""
