# test base: stands in for TC's /etc/skel/.profile; setupHome copies /etc/skel into the user's home.
PATH="$HOME/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
export PATH
