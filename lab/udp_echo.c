/* udp-echo: the UDP server of the lab's test image (busybox-static has no UDP server).
 *
 *   udp-echo PORT
 *
 * Answers every datagram on 0.0.0.0:PORT with "<hostname> <datagram>" (the container's
 * hostname tells which task answered), from the port it arrived on. Built static by build.rs,
 * so that it runs in the FROM-scratch image. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char host[256] = "", in[2048], out[2400];
	struct sockaddr_in addr = { .sin_family = AF_INET };
	int port, fd;

	if (argc != 2 || (port = atoi(argv[1])) <= 0 || port > 65535) {
		fprintf(stderr, "usage: udp-echo PORT\n");
		return 2;
	}
	gethostname(host, sizeof(host) - 1);
	fd = socket(AF_INET, SOCK_DGRAM, 0);
	addr.sin_port = htons((unsigned short)port);
	addr.sin_addr.s_addr = htonl(INADDR_ANY);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("udp-echo: bind");
		return 1;
	}
	for (;;) {
		struct sockaddr_in peer;
		socklen_t plen = sizeof(peer);
		ssize_t n = recvfrom(fd, in, sizeof(in) - 1, 0, (struct sockaddr *)&peer, &plen);
		int len;

		if (n < 0)
			continue;
		in[n] = 0;
		len = snprintf(out, sizeof(out), "%s %s", host, in);
		if (len > (int)sizeof(out) - 1)
			len = sizeof(out) - 1;
		sendto(fd, out, (size_t)len, 0, (struct sockaddr *)&peer, plen);
	}
}
