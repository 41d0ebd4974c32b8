"""The plugins this reference server can mount: memfs, localfs, queuefs and devfs."""
