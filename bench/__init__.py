"""`make bench`: agfs-fuse against curl, sshfs and rclone mount in one run (not a test)."""
